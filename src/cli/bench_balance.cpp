// r1dist bench balance: from a config's batch plan alone (tokenizer and data, no model), how
// evenly a run's steps spread their tokens over 1..N ranks, packed and padded. A step lasts
// as long as its busiest rank, so sum over steps of the mean rank's slots divided by the sum
// of the busiest rank's slots bounds the weak-scaling efficiency before any communication.
#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/config/config.h"
#include "r1dist/data/dataset.h"
#include "r1dist/data/packing.h"
#include "r1dist/log/log.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

struct Balance {
  double bound = 1.0;                        // sum of mean slots / sum of max slots over the steps
  double mean_tokens = 0, max_tokens = 0;    // per rank per step, averaged over the steps
  double idle_share = 0;                     // rank-steps with no tokens / all rank-steps
};

Balance measure(const BatchPlan& plan, int64_t steps, const std::vector<int64_t>& lengths, int world,
                int64_t micro, int64_t accum, bool packing, int64_t capacity) {
  Balance b;
  double mean_sum = 0, max_sum = 0;
  int64_t idle = 0;
  for (int64_t k = 0; k < steps; ++k) {
    const auto l = rank_loads(plan, k, lengths, world, micro, accum, packing, capacity);
    double total = 0;
    for (size_t r = 0; r < l.slots.size(); ++r) {
      total += double(l.slots[r]);
      idle += l.real[r] == 0;
      b.mean_tokens += double(l.real[r]) / double(world * steps);
    }
    mean_sum += total / world;
    max_sum += double(l.max_slots());
    int64_t most = 0;
    for (int64_t t : l.real) most = std::max(most, t);
    b.max_tokens += double(most) / double(steps);
  }
  b.bound = max_sum > 0 ? mean_sum / max_sum : 1.0;
  b.idle_share = double(idle) / double(world * steps);
  return b;
}

std::vector<int> parse_ranks(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');) {
    int n = 0;
    try {
      n = std::stoi(part);
    } catch (const std::exception&) {
    }
    if (n < 1) throw UsageError("bench balance: --ranks wants positive integers separated by commas, got '" + text + "'");
    out.push_back(n);
  }
  return out;
}

}  // namespace

int bench_balance(const Args& a) {
  const Config cfg = load_config(a.required("cfg"), a.list("set"));
  const auto ranks = parse_ranks(a.str("ranks"));
  const auto tok = Tokenizer::load(cfg.model.path);
  const Dataset data = build_dataset(cfg.data, tok, uint64_t(cfg.train.seed));
  if (data.train.empty()) throw UsageError("bench balance: no training rows in " + cfg.data.path);
  const auto lengths = example_lengths(data.train);
  const int64_t micro = cfg.train.micro_batch, accum = cfg.train.grad_accum;
  const int64_t fixed = a.i64("global-batch");
  std::printf("# %s: %zu train rows, max_seq_len %lld, micro_batch %lld, grad_accum %lld, %s\n",
              cfg.source_path.c_str(), data.train.size(), (long long)cfg.data.max_seq_len, (long long)micro,
              (long long)accum,
              fixed > 0 ? ("global batch " + std::to_string(fixed) + " rows at every size").c_str()
                        : "global batch = micro_batch x grad_accum x ranks (weak scaling)");
  std::printf("| ranks | global batch | steps | padded: bound | packed: bound | packed: tokens/rank mean | max | idle rank-steps |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int world : ranks) {
    int64_t m = micro, acc = accum, g = micro * accum * world;
    if (fixed > 0) {
      // The config's micro-batch where it divides the global batch, else one row per micro-batch.
      g = fixed;
      if (g % world != 0) {
        std::printf("| %d | %lld | - | - | - | - | - | global batch not divisible by ranks |\n", world, (long long)g);
        continue;
      }
      if ((g / world) % m != 0) m = 1;
      acc = g / world / m;
    }
    const BatchPlan plan(lengths, uint64_t(cfg.train.seed), g, cfg.data.group_by_length);
    const int64_t steps =
        cfg.train.steps > 0 ? cfg.train.steps : steps_for_epochs(cfg.train.epochs, int64_t(lengths.size()), g);
    const auto padded = measure(plan, steps, lengths, world, m, acc, false, 0);
    const auto packed = measure(plan, steps, lengths, world, m, acc, true, cfg.data.max_seq_len);
    std::printf("| %d | %lld | %lld | %.1f%% | %.1f%% | %.0f | %.0f | %.1f%% |\n", world, (long long)g,
                (long long)steps, 100 * padded.bound, 100 * packed.bound, packed.mean_tokens, packed.max_tokens,
                100 * packed.idle_share);
  }
  return 0;
}

}  // namespace r1dist
