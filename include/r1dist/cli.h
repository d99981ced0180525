// The r1dist command line: `r1dist --cfg FILE` runs a job; subcommands do the rest. Each
// command parses its own flags with cxxopts and returns an exit code: 0 ok, 2 usage or
// config error, 1 runtime failure.
#pragma once
#include <string>
#include <vector>

namespace r1dist {

int cli_main(int argc, char** argv);

// Subcommands take the arguments after their name (argv[0] is the command name).
int cmd_run(int argc, char** argv);         // --cfg FILE (the main job)
int cmd_init_model(int argc, char** argv);
int cmd_score(int argc, char** argv);
int cmd_config(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_metrics(int argc, char** argv);
int cmd_checkpoint_diff(int argc, char** argv);

}  // namespace r1dist
