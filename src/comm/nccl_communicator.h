// The NCCL communicator's factory, private to src/comm (a CUDA + NCCL build defines it in
// nccl_communicator.cpp; other builds throw).
#pragma once
#include <memory>

#include "r1dist/comm/communicator.h"

namespace r1dist::detail {

std::unique_ptr<Communicator> make_nccl_communicator(const at::Device& device);

}  // namespace r1dist::detail
