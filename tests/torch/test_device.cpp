// Which ranks of a node share a device's memory (tensor/device.h): the memory check and
// train.checkpointing = "auto" give each rank that share of the device. And libtorch's errors
// as the log shows them (tensor/torch_error.h).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "r1dist/base/error.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tensor/torch_error.h"

namespace r1dist {
namespace {

TEST(Device, EveryRankOfANodeSharesTheCpu) {
  for (int world : {1, 2, 5})
    for (int rank = 0; rank < world; ++rank) EXPECT_EQ(ranks_sharing_device("cpu", rank, world), world);
  EXPECT_EQ(ranks_sharing_device("cpu", 0, 0), 1);  // a world size not known yet counts as one rank
  if (!at::hasCUDA()) EXPECT_EQ(ranks_sharing_device("auto", 1, 3), 3);  // "auto" without CUDA is the CPU
}

TEST(Device, RanksBeyondTheGpuCountShareGpusRoundRobin) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA: the GPU cases need one";
  const int n = static_cast<int>(at::getNumGPUs());
  EXPECT_EQ(ranks_sharing_device("cuda", 0, n), 1);          // one rank per GPU
  EXPECT_EQ(ranks_sharing_device("cuda", 0, 2 * n + 1), 3);  // ranks 0, n and 2n on GPU 0
  EXPECT_EQ(ranks_sharing_device("cuda", n - 1, 2 * n + 1), n == 1 ? 3 : 2);
  EXPECT_EQ(ranks_sharing_device("cuda:0", 1, 4), 4);  // a named GPU: every rank on it
}

// A libtorch error reads as its message, without the C++ stack of the throw that its what()
// carries; other exceptions as their what().
TEST(TorchError, TheMessageWithoutTheStack) {
  try {
    (void)at::empty({int64_t(1) << 58}, at::kFloat);  // 2^60 bytes: past any address space
    FAIL() << "an allocation of 2^60 bytes did not throw";
  } catch (const std::exception& e) {
    // (libtorch 1.13's what() has the stack, "frame #0: ..."; builds that leave it out give
    // the same text either way.)
    const std::string text = error_text(e);
    EXPECT_NE(text.find("allocate"), std::string::npos) << text;
    EXPECT_EQ(text.find("frame #"), std::string::npos) << text;
  }
  EXPECT_EQ(error_text(Error("a file: bad")), "a file: bad");
}

}  // namespace
}  // namespace r1dist
