// Placeholder until the command lands: fails clearly rather than pretending.
#include "cli/cli.h"
int cmd_tokenize(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("tokenize", "not implemented yet"); }
