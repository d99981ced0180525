// The r1dist command line: `r1dist --cfg FILE` runs a job; subcommands do the rest
// (src/cli/commands.h lists them). Exit codes: 0 ok, 2 usage or config error, 1 runtime
// failure.
#pragma once

namespace r1dist {

int cli_main(int argc, char** argv);

}  // namespace r1dist
