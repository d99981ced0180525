// The subcommands of src/cli. Each takes the arguments after its name (argv[0] is the
// command name) and returns an exit code, or throws (UsageError: 2, other errors: 1).
#pragma once
#include <string>

namespace r1dist {

class Args;

int cmd_run(int argc, char** argv);  // train --cfg FILE (the main job)
int cmd_init_model(int argc, char** argv);
int cmd_score(int argc, char** argv);
int cmd_config(int argc, char** argv);
int cmd_bench(int argc, char** argv);
std::string bench_kind_names();  // "nf4, data, ...": the kinds of cmd_bench's table
// Whether `bench ...` (argv[0] = "bench") names a kind that runs on every rank (train,
// allreduce: they all-reduce across ranks); the others run once, on rank 0.
bool bench_runs_on_every_rank(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_metrics(int argc, char** argv);
int cmd_checkpoint_diff(int argc, char** argv);
int cmd_checkpoint(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_merge(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_report(int argc, char** argv);
int cmd_sweep(int argc, char** argv);

// Kinds of r1dist bench kept apart from the torch ones.
int bench_balance(const Args& a);  // bench_balance.cpp
int bench_allreduce(const Args& a);  // bench_scaling.cpp
// The tokens/s per rank that bench train's efficiency divides by: --baseline-tps X, or the
// tokens_per_s of the last `bench train` JSON line in --baseline FILE; NaN when neither is given.
double bench_baseline_tps(const Args& a);

}  // namespace r1dist
