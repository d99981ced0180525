// Which ranks of a node share a device's memory (tensor/device.h): the memory check and
// train.checkpointing = "auto" give each rank that share of the device.
#include <gtest/gtest.h>

#include "r1dist/tensor/device.h"

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

}  // namespace
}  // namespace r1dist
