// Precompiled header of the torch layer (r1dist_torch and its tests): the libtorch headers
// the code uses, nothing more (<torch/torch.h> would add nn, optim, data and serialize).
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
