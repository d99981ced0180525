// Output-quality measures (quality/): repetition and collapse on crafted texts, and the
// accuracy interval against hand-computed values.
#include <gtest/gtest.h>

#include <random>

#include "r1dist/quality/accuracy.h"
#include "r1dist/quality/repetition.h"

namespace r1dist {
namespace {

std::vector<int64_t> loop(const std::vector<int64_t>& period, size_t n) {
  std::vector<int64_t> t;
  while (t.size() < n) t.push_back(period[t.size() % period.size()]);
  return t;
}

TEST(Repetition, HandComputedOnAShortText) {
  // 1 2 3 4 1 2 3 4 5: 4-grams 1234 2341 3412 4123 1234 2345 -> one repeat of six.
  const auto r = measure_repetition({1, 2, 3, 4, 1, 2, 3, 4, 5});
  EXPECT_EQ(r.tokens, 9);
  EXPECT_DOUBLE_EQ(r.repeated_4gram_share, 1.0 / 6.0);
  EXPECT_EQ(r.longest_repeat, 4);             // 1 2 3 4
  EXPECT_DOUBLE_EQ(r.distinct_2, 5.0 / 8.0);  // 12 23 34 41 45 of 8 bigrams
  EXPECT_FALSE(r.collapsed) << "too short to judge";
}

TEST(Repetition, ALoopingTextIsFlaggedAndOrdinaryTextIsNot) {
  const auto looping = measure_repetition(loop({7, 8, 9}, 200));
  EXPECT_GT(looping.repeated_4gram_share, 0.95);
  EXPECT_EQ(looping.longest_repeat, 197);  // the text minus one period, overlapping itself
  EXPECT_LT(looping.distinct_2, 0.02);
  EXPECT_TRUE(looping.collapsed);

  // A loop that starts after a normal opening still collapses.
  std::vector<int64_t> late;
  for (int64_t i = 0; i < 60; ++i) late.push_back(1000 + i);
  const auto tail = loop({5, 6, 7, 8, 9, 10}, 140);
  late.insert(late.end(), tail.begin(), tail.end());
  EXPECT_TRUE(measure_repetition(late).collapsed);

  // Ordinary text: tokens drawn from a large vocabulary with a word-frequency-like skew.
  std::mt19937_64 rng(3);
  std::vector<int64_t> prose;
  std::vector<double> weights;
  for (int i = 1; i <= 5000; ++i) weights.push_back(1.0 / i);
  std::discrete_distribution<int> d(weights.begin(), weights.end());
  for (int i = 0; i < 400; ++i) prose.push_back(d(rng));
  const auto normal = measure_repetition(prose);
  EXPECT_LT(normal.repeated_4gram_share, 0.05);
  EXPECT_LT(normal.longest_repeat, 6);
  EXPECT_FALSE(normal.collapsed);
}

TEST(Repetition, EmptyAndTinyTexts) {
  EXPECT_EQ(measure_repetition({}).tokens, 0);
  EXPECT_FALSE(measure_repetition({}).collapsed);
  EXPECT_DOUBLE_EQ(measure_repetition({4}).distinct_2, 1.0);
  EXPECT_EQ(measure_repetition({4, 4}).longest_repeat, 1);
}

TEST(Accuracy, WilsonIntervalMatchesHandComputedValues) {
  // 7 of 10, z = 1.96: centre (0.7 + 0.19208) / 1.38416 = 0.64449, half 0.26291 (by hand).
  const auto a = wilson_accuracy(7, 10);
  EXPECT_DOUBLE_EQ(a.value, 0.7);
  EXPECT_NEAR(a.low, 0.39677, 1e-4);
  EXPECT_NEAR(a.high, 0.89220, 1e-4);
  const auto none = wilson_accuracy(0, 20);
  EXPECT_EQ(none.low, 0.0);
  EXPECT_NEAR(none.high, 0.16113, 1e-4);
  const auto all = wilson_accuracy(20, 20);
  EXPECT_NEAR(all.low, 0.83887, 1e-4);
  EXPECT_EQ(all.high, 1.0);
  EXPECT_EQ(wilson_accuracy(0, 0).total, 0);
}

}  // namespace
}  // namespace r1dist
