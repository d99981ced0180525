// Dispatch: which command, whether it needs MPI, one catch for every error.
#include "r1dist/cli/cli.h"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/dist/stop_signals.h"
#include "r1dist/log/log.h"
#include "r1dist/tensor/torch_error.h"

namespace r1dist {

namespace {

struct Command {
  const char* name;
  std::string summary;
  int (*fn)(int, char**);
  bool mpi;  // talks to other ranks: MPI is initialised before it runs
  // When set: whether this invocation (argv from the command's name on) talks to other ranks
  // (bench: the kinds that run on every rank), overriding `mpi`.
  bool (*mpi_when)(int, char**) = nullptr;
};

// `train` is described by the usage block above the list; `r1dist --cfg FILE` is its older spelling.
const Command kRun = {"train", "train as the config describes", cmd_run, true};

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
    {"init-model", "write an HF-format Qwen2 model directory with seeded random weights", cmd_init_model, false},
    {"score", "mean NLL and per-token log-probs of token-id sequences under a model", cmd_score, true},
    {"config", "print a validated config with every default filled in, or list every key", cmd_config, false},
    {"tokenize", "text to token ids with a model's tokenizer.json, or ids back to text", cmd_tokenize, false},
    {"metrics", "print a run's metrics.h5 as TSV (also while the run writes it)", cmd_metrics, false},
    {"checkpoint", "verify the checksums of checkpoints, run directories and exported adapters", cmd_checkpoint,
     false},
    {"checkpoint-diff", "how far two checkpoints' adapters and optimizer moments are apart", cmd_checkpoint_diff,
     false},
    {"generate", "generate text from a model, with or without an adapter (greedy or sampled, KV cache)",
     cmd_generate, false},
    {"eval", "held-out loss, drift from the base, multiple-choice accuracy, generations + repetition",
     cmd_eval, false},
    {"report", "one Markdown + HTML report with plots comparing runs (e.g. the eight versions)", cmd_report,
     false},
    {"sweep", "plan a sweep file (a grid of settings, one config per point) or show what became of its points",
     cmd_sweep, false},
    {"merge", "fold an adapter into its base and write an HF model directory", cmd_merge, false},
    {"export", "write a model (adapter folded in) as one GGUF file for llama.cpp and Ollama", cmd_export, false},
    {"bench", "benchmarks that print measured figures (" + bench_kind_names() + ")", cmd_bench, false,
     bench_runs_on_every_rank},
  };
  return list;
}

void print_usage() {
  std::cout << "r1dist " << R1DIST_VERSION
            << ": QLoRA fine-tuning of DeepSeek-R1-Distill-Qwen models, measured.\n\n"
               "usage:\n"
               "  r1dist train --cfg FILE [--set section.key=value ...] [--resume auto|PATH] [--dry-run]\n"
               "               [--stop-after N] [--json] [--log-all-ranks]\n"
               "      train as the config describes (under mpirun: one rank per GPU or CPU slot):\n"
               "      progress on rank 0, HDF5 checkpoints (written in the background) and metrics in\n"
               "      output.dir; at the end, the time split of the command (load, steps, evals, ...)\n"
               "  r1dist COMMAND [options]      (r1dist COMMAND --help for its options)\n\ncommands:\n";
  for (const auto& c : commands()) std::printf("  %-16s %s\n", c.name, c.summary.c_str());
  std::cout << "\nexit codes: 0 ok, 2 usage, config or input-file error, 1 runtime failure (I/O, a non-finite\n"
               "step, a collective that missed dist.timeout_s), 75 stopped early by a signal (SIGTERM, SIGINT,\n"
               "SIGUSR1: the run finished its step and wrote a checkpoint; --resume auto continues it; a second\n"
               "signal ends it at once). Under mpirun send SIGUSR1 to mpirun (it returns 1 after SIGTERM/SIGINT).\n";
}

const Command* find_command(const char* word) {
  if (word[0] == '-' || !std::strcmp(word, kRun.name)) return &kRun;
  for (const auto& c : commands())
    if (!std::strcmp(word, c.name)) return &c;
  throw UsageError(std::string("unknown command '") + word + "' (see r1dist --help)");
}

}  // namespace

int cli_main(int argc, char** argv) {
  int code = 0;
  const Command* running = nullptr;
  try {
    log::set_rank(dist_group().rank, dist_group().world, false);
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
      if (dist_group().rank == 0) print_usage();
      code = argc < 2 ? 2 : 0;
    } else if (!std::strcmp(argv[1], "--version")) {
      if (dist_group().rank == 0) std::cout << "r1dist " << R1DIST_VERSION << "\n";
    } else {
      const Command* c = running = find_command(argv[1]);
      const bool mpi = c->mpi_when && argv[1][0] != '-' ? c->mpi_when(argc - 1, argv + 1) : c->mpi;
      if (mpi) {
        const auto& pg = dist_init(&argc, &argv);
        log::set_rank(pg.rank, pg.world, false);
      }
      // A command without collectives runs once: on the launcher's rank 0 (mpirun, srun).
      // `r1dist --cfg FILE` hands the flags over as they are, `r1dist COMMAND ...` what follows the name.
      const int skip = argv[1][0] == '-' ? 0 : 1;
      if (mpi || dist_group().rank == 0) code = c->fn(argc - skip, argv + skip);
    }
  } catch (const UsageError& e) {
    if (dist_group().rank == 0) log::error(e.what());
    code = 2;
  } catch (const std::bad_alloc&) {
    // The training hint where the training settings decide the memory; elsewhere the command.
    if (running == &kRun)
      log::error(
          "out of host memory: an allocation failed (std::bad_alloc)\nHINT: lower train.micro_batch or "
          "data.max_seq_len (r1dist train --cfg FILE --dry-run prints the memory estimate), or run fewer ranks "
          "per node");
    else
      log::error("out of host memory in r1dist ", running ? running->name : "",
                 ": an allocation failed (std::bad_alloc)");
    code = 1;
  } catch (const std::exception& e) {
    const std::string what = error_text(e);
    // libtorch's CUDA allocator says how much it tried to allocate and what was free.
    const bool oom = running == &kRun && what.find("out of memory") != std::string::npos;
    log::error(what, oom ? "\nHINT: lower train.micro_batch or data.max_seq_len, set train.checkpointing = "
                           "\"layer\" (r1dist train --cfg FILE --dry-run prints the memory estimate)"
                         : "");
    code = 1;
  }
  log::flush();
  // A failing rank ends the job (the others may wait in a collective). A resumable stop is
  // agreed by every rank, which all get here: a normal MPI_Finalize.
  if (code != 0 && code != kExitResumable && dist_group().initialized && dist_group().world > 1) dist_abort(code);
  dist_finalize();
  return code;
}

}  // namespace r1dist
