// Placeholder until the command lands: fails clearly rather than pretending.
#include "cli/cli.h"
int cmd_convert_llama2c(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("convert_llama2c", "not implemented yet"); }
