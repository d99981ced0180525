// The time split of a command (log/time_split.h): the parts in order, "other" and "total",
// parts + other = total, shares of the total; the process clock. No timing assertions: only
// what holds however fast or slow the machine is.
#include <gtest/gtest.h>

#include <stdexcept>

#include "r1dist/log/time_split.h"

namespace {

using namespace r1dist;

TEST(TimeSplit, ThePartsAndOtherAddUpToTheTotal) {
  TimeSplit split({"load", "train_steps", "evals"});
  split.add("load", 1.5);
  split.add("train_steps", 2.0);
  split.add("train_steps", 0.25);
  { auto timed = split.time("evals"); }
  split.add_since_process_start("load");
  EXPECT_THROW(split.add("exports", 1), std::logic_error);
  const auto parts = split.finish();
  ASSERT_EQ(parts.size(), 5u);
  const char* names[] = {"load", "train_steps", "evals", "other", "total"};
  for (size_t i = 0; i < parts.size(); ++i) EXPECT_EQ(parts[i].name, names[i]);
  EXPECT_GE(parts[0].seconds, 1.5);
  EXPECT_EQ(parts[1].seconds, 2.25);
  EXPECT_GE(parts[2].seconds, 0);
  EXPECT_GE(parts[3].seconds, 0) << "other is never negative";
  double sum = 0, shares = 0;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    sum += parts[i].seconds;
    shares += parts[i].share;
    EXPECT_DOUBLE_EQ(parts[i].share, parts[i].seconds / parts.back().seconds) << parts[i].name;
  }
  EXPECT_NEAR(sum, parts.back().seconds, 1e-9 * parts.back().seconds);
  EXPECT_NEAR(shares, 1.0, 1e-12);
  EXPECT_EQ(parts.back().share, 1.0);
}

TEST(TimeSplit, TheProcessClockRunsFromTheStartOfTheProcess) {
  const double a = process_seconds();
  const double b = process_seconds();
  EXPECT_GT(a, 0);
  EXPECT_GE(b, a);
}

TEST(TimeSplit, TheTableNamesEveryPartWithItsSecondsAndShare) {
  const std::vector<TimePart> parts = {{"load", 12.346, 0.5}, {"other", 0.004, 0.0002}, {"total", 24.69, 1}};
  const auto table = format_time_split(parts, "time split:");
  EXPECT_EQ(table,
            "time split:\n"
            "  load       12.35 s   50.0%\n"
            "  other       0.00 s    0.0%\n"
            "  total      24.69 s  100.0%");
}

}  // namespace
