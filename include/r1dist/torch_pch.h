// Precompiled header for r1dist_core: the libtorch headers most files use.
#pragma once
#include <ATen/ATen.h>
#include <torch/torch.h>
