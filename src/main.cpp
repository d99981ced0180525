#include "r1dist/cli.h"

int main(int argc, char** argv) { return r1dist::cli_main(argc, argv); }
