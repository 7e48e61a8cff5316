// Placeholder until the command lands: fails clearly rather than pretending.
#include "cli/cli.h"
int cmd_run(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("run", "not implemented yet"); }
