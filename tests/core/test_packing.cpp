// data.packing: the first-fit-decreasing rule, the ranks' shares, the packed collate and
// the slot accounting (data/packing.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "r1dist/base/error.h"
#include "r1dist/data/packing.h"

namespace r1dist::test {
namespace {

std::vector<int64_t> rows_of(const std::vector<PackedSequence>& seqs) {
  std::vector<int64_t> out;
  for (const auto& s : seqs) out.insert(out.end(), s.rows.begin(), s.rows.end());
  return out;
}

TEST(Packing, FirstFitDecreasingPlacesEachRowInTheFirstSequenceWithRoom) {
  // Lengths by example: 0:5 1:3 2:8 3:2 4:6 5:4, capacity 10. Longest first: 8 opens
  // sequence 0; 6 opens 1; 5 opens 2; 4 fills 1 (10); 3 goes to 2 (8); 2 fills 0 (10).
  const std::vector<int64_t> lengths{5, 3, 8, 2, 6, 4};
  const auto seqs = pack_rows({0, 1, 2, 3, 4, 5}, lengths, 10);
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(seqs[0].rows, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(seqs[1].rows, (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(seqs[2].rows, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(seqs[0].tokens, 10);
  EXPECT_EQ(seqs[1].tokens, 10);
  EXPECT_EQ(seqs[2].tokens, 8);
  // Ties keep the global batch's order: the earlier of two equal rows is placed first.
  const auto tie = pack_rows({3, 1, 0}, {4, 4, 9, 4}, 8);
  ASSERT_EQ(tie.size(), 2u);
  EXPECT_EQ(tie[0].rows, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(tie[1].rows, (std::vector<int64_t>{0}));
}

TEST(Packing, EveryRowOnceNoSequenceOverCapacityAndNoRowFitsAnEarlierSequence) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t capacity = 16 + int64_t(rng() % 200);
    std::vector<int64_t> lengths(1 + rng() % 80);
    int64_t total = 0;
    for (auto& n : lengths) total += n = 1 + int64_t(rng() % uint64_t(capacity));
    std::vector<int64_t> rows(lengths.size());
    std::iota(rows.begin(), rows.end(), 0);
    std::shuffle(rows.begin(), rows.end(), rng);
    const auto seqs = pack_rows(rows, lengths, capacity);
    auto got = rows_of(seqs);
    std::sort(got.begin(), got.end());
    auto want = rows;
    std::sort(want.begin(), want.end());
    ASSERT_EQ(got, want) << "trial " << trial;
    for (const auto& s : seqs) {
      int64_t sum = 0;
      for (int64_t r : s.rows) sum += lengths[size_t(r)];
      EXPECT_EQ(sum, s.tokens);
      EXPECT_LE(s.tokens, capacity);
    }
    // First fit: a row sits in a later sequence only because no earlier one had room for it
    // (sequences only grow, so that still holds at the end).
    for (size_t j = 0; j < seqs.size(); ++j)
      for (int64_t r : seqs[j].rows)
        for (size_t i = 0; i < j; ++i) EXPECT_GT(seqs[i].tokens + lengths[size_t(r)], capacity) << "trial " << trial;
  }
}

TEST(Packing, TheSequencesDoNotDependOnTheWorldSizeAndEachGoesToOneRank) {
  std::mt19937_64 rng(11);
  std::vector<int64_t> lengths(300);
  for (auto& n : lengths) n = 20 + int64_t(rng() % 700);
  const BatchPlan plan(lengths, 3407, 64, true);
  for (int64_t step = 0; step < 6; ++step) {
    const auto seqs = pack_rows(plan.step_rows(step), lengths, 1024);  // no world size involved
    std::map<std::vector<int64_t>, int> expected;
    for (const auto& s : seqs) ++expected[s.rows];
    for (int world : {1, 2, 4, 8}) {
      std::map<std::vector<int64_t>, int> got;
      std::vector<int64_t> load(size_t(world), 0);
      for (int r = 0; r < world; ++r)
        for (const auto& mb : pack_rank_share(seqs, r, world, 2)) {
          EXPECT_LE(mb.size(), 2u);
          for (const auto& s : mb) {
            ++got[s.rows];
            load[size_t(r)] += s.tokens;
          }
        }
      EXPECT_EQ(got, expected) << "step " << step << ", world " << world;
      // Longest first to the least loaded rank: no rank holds more than the least loaded
      // one plus the longest sequence.
      const int64_t most = *std::max_element(load.begin(), load.end());
      const int64_t least = *std::min_element(load.begin(), load.end());
      EXPECT_LE(most - least, seqs.empty() ? 0 : 1024) << "world " << world;
    }
  }
}

TEST(Packing, ARowLongerThanTheSequenceIsRefused) {
  EXPECT_THROW(pack_rows({0, 1}, {5, 11}, 10), UsageError);
  EXPECT_THROW(pack_rows({0}, {0}, 10), UsageError);
  EXPECT_THROW(pack_rows({2}, {5, 5}, 10), UsageError);
  EXPECT_NO_THROW(pack_rows({0, 1}, {10, 10}, 10));  // rows that fill a sequence exactly
}

TEST(Packing, CollateLaysRowsEndToEndAndMasksEachRowStart) {
  Example a, b;
  a.ids = {1, 2, 3, 4};
  a.labels = {-100, -100, 3, 4};
  b.ids = {5, 6, 7};
  b.labels = {5, 6, 7};  // a row whose first token carries a label (train_on_prompt)
  const PackedCollated c = collate_packed({&a, &b});
  EXPECT_EQ(c.batch, 1);
  EXPECT_EQ(c.seq, 7);
  EXPECT_EQ(c.ids, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
  // b's first label would be predicted from a's last token: masked.
  EXPECT_EQ(c.labels, (std::vector<int64_t>{-100, -100, 3, 4, -100, 6, 7}));
  EXPECT_EQ(c.row_lengths, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(c.tokens, 7);
  EXPECT_EQ(c.loss_tokens, 4);  // as unpacked: a 3, 4; b 6, 7
  const Collated u = collate({&a, &b}, 0);
  EXPECT_EQ(c.loss_tokens, u.loss_tokens);
}

TEST(Packing, SlotsCountThePaddingOfEveryRanksMicroBatches) {
  // Global batch 4 = 2 ranks x micro 2 x accum 1; without grouping the step's rows are a
  // permutation: count the slots from the plan's own micro-batches.
  const std::vector<int64_t> lengths{10, 3, 7, 2, 5, 9, 4, 1};
  const BatchPlan plan(lengths, 5, 4, false);
  int64_t real = 0, slots = 0;
  for (int r = 0; r < 2; ++r)
    for (const auto& mb : plan.rank_micro_batches(0, r, 2, 2, 1)) {
      int64_t longest = 0;
      for (int64_t i : mb) real += lengths[size_t(i)], longest = std::max(longest, lengths[size_t(i)]);
      slots += longest * 2;
    }
  const auto n = unpacked_slots(plan, 0, lengths, 2, 2, 1);
  EXPECT_EQ(n.real, real);
  EXPECT_EQ(n.slots, slots);
  EXPECT_GT(n.slots, n.real);
  EXPECT_NEAR(n.padding_share(), 1.0 - double(real) / double(slots), 1e-12);
  // One rank, one micro-batch of all four rows: padded to the longest of them.
  const auto one = unpacked_slots(plan, 0, lengths, 1, 4, 1);
  int64_t longest = 0;
  for (int64_t i : plan.step_rows(0)) longest = std::max(longest, lengths[size_t(i)]);
  EXPECT_EQ(one.slots, 4 * longest);
  EXPECT_EQ(SlotCount{}.padding_share(), 0.0);
}

TEST(Packing, TheSummaryCountsSequencesAndIdleRanks) {
  // 4 rows of 300 tokens, capacity 800: two per sequence -> 2 sequences.
  const std::vector<int64_t> lengths{300, 300, 300, 300};
  const BatchPlan plan(lengths, 1, 4, false);
  const auto s = summarize_packing(plan, 0, lengths, 800, 4);
  EXPECT_EQ(s.rows, 4);
  EXPECT_EQ(s.tokens, 1200);
  EXPECT_EQ(s.sequences, 2);
  EXPECT_EQ(s.idle_ranks, 2);
  EXPECT_EQ(summarize_packing(plan, 0, lengths, 800, 2).idle_ranks, 0);
  EXPECT_EQ(summarize_packing(plan, 0, lengths, 300, 4).idle_ranks, 0) << "one row per sequence";
}

}  // namespace
}  // namespace r1dist::test
