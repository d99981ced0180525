// r1dist checkpoint-diff A B: how far two checkpoints' adapters and optimizer moments are
// apart (max |a-b| / max |b|, per tensor and overall; the moments by tensor through
// moment_layout), e.g. a multi-GPU run against its
// one-GPU equivalent.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "r1dist/formats/checkpoint.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_paths.h"
#include "r1dist/base/error.h"

namespace r1dist {

namespace {

struct Diff {
  double max_abs = 0, max_ref = 0;
  bool identical = true;
  void add(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i) {
      max_abs = std::max(max_abs, std::abs(double(a[i]) - double(b[i])));
      max_ref = std::max(max_ref, std::abs(double(b[i])));
      identical = identical && (a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])));
    }
  }
  double rel() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};

}  // namespace

int cmd_checkpoint_diff(int argc, char** argv) {
  Args args("r1dist checkpoint-diff",
            "Compare two checkpoints: max|a-b|/max|b| of the adapters (overall and worst tensor) and of the AdamW "
            "moments. A and B: checkpoint files (step_N.h5) or run directories (their newest valid checkpoint). "
            "Exit 0 when --tol is met (or not given), 1 otherwise.");
  args.option_str("a", "checkpoint A")
      .option_str("b", "checkpoint B (the reference)")
      .positional({{"a", "A"}, {"b", "B"}})
      .option_real("tol", "fail when the adapters' relative difference exceeds this");
  if (!args.parse(argc, argv)) return 0;
  const auto path_a = checkpoint_arg(args.required("a")), path_b = checkpoint_arg(args.required("b"));
  const auto a = read_checkpoint(path_a);
  const auto b = read_checkpoint(path_b);
  if (a.adapters.size() != b.adapters.size())
    throw UsageError("checkpoint-diff: " + std::to_string(a.adapters.size()) + " adapter tensors against " +
                     std::to_string(b.adapters.size()));
  Diff all;
  double worst = -1;
  std::string worst_name;
  for (size_t i = 0; i < a.adapters.size(); ++i) {
    const auto &x = a.adapters[i], &y = b.adapters[i];
    if (x.name != y.name || x.data.size() != y.data.size())
      throw UsageError("checkpoint-diff: adapter " + std::to_string(i) + " is " + x.name + " in A and " + y.name +
                       " in B (or their sizes differ)");
    Diff d;
    d.add(x.data, y.data);
    all.add(x.data, y.data);
    if (d.rel() > worst) {
      worst = d.rel();
      worst_name = x.name;
    }
  }
  // The moments, overall and by tensor (the slices of /optimizer/layout).
  Diff m, v;
  double worst_m = -1;
  std::string worst_m_name;
  if (a.adam_m.size() == b.adam_m.size()) {
    m.add(a.adam_m, b.adam_m);
    v.add(a.adam_v, b.adam_v);
    for (const auto& t : moment_layout(a.adapters)) {
      auto slice = [&](const std::vector<float>& x) {
        return std::vector<float>(x.begin() + t.offset, x.begin() + t.offset + t.length);
      };
      Diff dm, dv;
      dm.add(slice(a.adam_m), slice(b.adam_m));
      dv.add(slice(a.adam_v), slice(b.adam_v));
      if (std::max(dm.rel(), dv.rel()) > worst_m) {
        worst_m = std::max(dm.rel(), dv.rel());
        worst_m_name = t.name;
      }
    }
  }
  if (path_a != args.str("a") || path_b != args.str("b"))
    std::printf("A %s, B %s\n", path_a.c_str(), path_b.c_str());
  std::printf("steps %lld vs %lld, world sizes %d vs %d\n", (long long)a.step, (long long)b.step, a.world_size,
              b.world_size);
  std::printf("adapters: max rel diff %.3g (max abs %.3g)%s; worst tensor %s: %.3g\n", all.rel(), all.max_abs,
              all.identical ? ", bitwise identical" : "", worst_name.c_str(), worst);
  std::printf("exp_avg: %.3g, exp_avg_sq: %.3g (max rel diff); worst tensor %s: %.3g\n", m.rel(), v.rel(),
              worst_m_name.c_str(), worst_m);
  if (args.has("tol") && !(all.rel() <= args.real("tol"))) {
    std::printf("FAIL: %.3g > tol %.3g\n", all.rel(), args.real("tol"));
    return 1;
  }
  return 0;
}

}  // namespace r1dist
