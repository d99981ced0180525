#include "r1dist/cli/cli.h"

int main(int argc, char** argv) { return r1dist::cli_main(argc, argv); }
