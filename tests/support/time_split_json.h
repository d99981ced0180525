// The time split that `r1dist train --json` and `r1dist eval --json` print (time_split: one
// {"seconds", "share"} object per part), read back in the order of `names` and checked:
// every name present and no other, seconds >= 0, shares in 0..1, the parts before "total"
// (the last name) adding up to it.
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "r1dist/log/time_split.h"

namespace r1dist::test {

inline std::vector<TimePart> json_time_split(const nlohmann::json& split, const std::vector<std::string>& names) {
  std::vector<TimePart> parts;
  EXPECT_EQ(split.size(), names.size()) << split.dump();
  double sum = 0;
  for (const auto& name : names) {
    if (!split.contains(name)) {
      ADD_FAILURE() << "time_split has no part " << name << ": " << split.dump();
      return {};
    }
    parts.push_back({name, split[name]["seconds"].get<double>(), split[name]["share"].get<double>()});
    EXPECT_GE(parts.back().seconds, 0) << name;
    EXPECT_GE(parts.back().share, 0) << name;
    EXPECT_LE(parts.back().share, 1) << name;
    if (name != names.back()) sum += parts.back().seconds;
  }
  const double total = parts.back().seconds;
  EXPECT_NEAR(sum, total, 1e-9 * total) << "the parts add up to the total";
  EXPECT_EQ(parts.back().share, 1);
  return parts;
}

}  // namespace r1dist::test
