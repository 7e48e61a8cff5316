// Placeholder until the command lands: fails clearly rather than pretending.
#include "cli/cli.h"
int cmd_upcycle(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("upcycle", "not implemented yet"); }
