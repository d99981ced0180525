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

// Evaluation rows: pack_rows's rule, a row longer than the capacity alone (first), an empty
// row left out.
TEST(Packing, EvaluationRowsPackFirstFitDecreasingAndALongerRowGoesAlone) {
  // Lengths 23, 1, 40, 7, 2, 16, 30, 9, 12, 5, 0 at capacity 32: 40 alone; then 30 opens
  // sequence 1; 23 opens 2; 16 opens 3; 12 fills 3 (28); 9 goes to 2 (32); 7 to 4 (new:
  // 30 + 7, 23 + 9, 28 + 7 are over); 5 to 4 (12); 2 to 1 (32); 1 to 3 (29).
  const std::vector<int64_t> lengths{23, 1, 40, 7, 2, 16, 30, 9, 12, 5, 0};
  std::vector<Example> rows(lengths.size());
  std::vector<const Example*> ptrs;
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].ids.assign(size_t(lengths[i]), 1);
    ptrs.push_back(&rows[i]);
  }
  const auto seqs = pack_examples(ptrs, 32);
  auto idx = [&](const std::vector<const Example*>& s) {
    std::vector<int64_t> out;
    for (const Example* x : s) out.push_back(int64_t(x - rows.data()));
    return out;
  };
  ASSERT_EQ(seqs.size(), 5u);
  EXPECT_EQ(idx(seqs[0]), (std::vector<int64_t>{2}));
  EXPECT_EQ(idx(seqs[1]), (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(idx(seqs[2]), (std::vector<int64_t>{0, 7}));
  EXPECT_EQ(idx(seqs[3]), (std::vector<int64_t>{5, 8, 1}));
  EXPECT_EQ(idx(seqs[4]), (std::vector<int64_t>{3, 9}));
  // Every row longer than a capacity of 1 alone, longest first; none, none.
  const auto alone = pack_examples(ptrs, 1);
  ASSERT_EQ(alone.size(), 10u);
  EXPECT_EQ(idx(alone[0]), (std::vector<int64_t>{2}));
  EXPECT_EQ(idx(alone.back()), (std::vector<int64_t>{1}));
  EXPECT_TRUE(pack_examples({}, 32).empty());
  EXPECT_TRUE(pack_examples({&rows[10]}, 32).empty());
  EXPECT_THROW(pack_examples(ptrs, 0), UsageError);
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

TEST(Packing, EveryRankGetsTokensWithinOneRowOfTheOthersAndEveryRowOnce) {
  // Rows of 20..720 tokens (the seed data's ~700-token rows), 64 per step, capacity 8192: the
  // whole step fits about 6 sequences, so sequences dealt to 8 ranks would leave 2 idle.
  std::mt19937_64 rng(11);
  std::vector<int64_t> lengths(300);
  for (auto& n : lengths) n = 20 + int64_t(rng() % 700);
  const BatchPlan plan(lengths, 3407, 64, true);
  for (int64_t step = 0; step < 6; ++step) {
    const auto rows = plan.step_rows(step);
    int64_t longest = 0;
    for (int64_t r : rows) longest = std::max(longest, lengths[size_t(r)]);
    // One rank: first-fit decreasing over the whole step.
    const auto one = pack_step(rows, lengths, 8192, 1);
    ASSERT_EQ(one.size(), 1u);
    const auto whole = pack_rows(rows, lengths, 8192);
    ASSERT_EQ(one[0].size(), whole.size());
    for (size_t i = 0; i < whole.size(); ++i) EXPECT_EQ(one[0][i].rows, whole[i].rows);
    for (int world : {2, 4, 8}) {
      std::vector<int64_t> seen, load(size_t(world), 0);
      for (int r = 0; r < world; ++r)
        for (const auto& mb : pack_rank_share(rows, lengths, 8192, r, world, 2)) {
          EXPECT_LE(mb.size(), 2u);
          for (const auto& s : mb) {
            EXPECT_LE(s.tokens, 8192);
            seen.insert(seen.end(), s.rows.begin(), s.rows.end());
            load[size_t(r)] += s.tokens;
          }
        }
      auto want = rows;
      std::sort(want.begin(), want.end());
      std::sort(seen.begin(), seen.end());
      EXPECT_EQ(seen, want) << "step " << step << ", world " << world;
      // The stated margin: the busiest rank holds at most one row (the step's longest) more
      // than the least busy one; at 8 ranks that is within 13% of the mean (~2,800 tokens).
      const int64_t most = *std::max_element(load.begin(), load.end());
      const int64_t least = *std::min_element(load.begin(), load.end());
      EXPECT_LE(most - least, longest) << "step " << step << ", world " << world;
      EXPECT_GT(least, 0) << "no rank idles: the step has more rows than ranks";
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

TEST(Packing, TheSummaryCountsSequencesRankTokensAndIdleRanks) {
  // 4 rows of 300 tokens, capacity 800: two per sequence -> 2 sequences.
  const std::vector<int64_t> lengths{300, 300, 300, 300};
  const BatchPlan plan(lengths, 1, 4, false);
  const auto one = summarize_packing(plan, 0, lengths, 800, 1);
  EXPECT_EQ(one.rows, 4);
  EXPECT_EQ(one.tokens, 1200);
  EXPECT_EQ(one.sequences, 2);
  EXPECT_EQ(one.idle_ranks, 0);
  // Four ranks: a row each (balanced before packing), none idle.
  const auto four = summarize_packing(plan, 0, lengths, 800, 4);
  EXPECT_EQ(four.sequences, 4);
  EXPECT_EQ(four.idle_ranks, 0);
  EXPECT_EQ(four.min_rank_tokens, 300);
  EXPECT_EQ(four.max_rank_tokens, 300);
  // More ranks than rows: the rest idle.
  const auto six = summarize_packing(plan, 0, lengths, 800, 6);
  EXPECT_EQ(six.idle_ranks, 2);
  EXPECT_EQ(six.min_rank_tokens, 0);
}

}  // namespace
}  // namespace r1dist::test
