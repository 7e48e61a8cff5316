// Command-line front end: one file per command (cmd_<name>.c), argument helpers in args.c.
// Commands return the process exit status; errors are printed as one line by cli_fail().
#pragma once
#include <stdint.h>

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_convert_llama2c(int argc, char **argv);
int cmd_convert_hf(int argc, char **argv);
int cmd_upcycle(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_experts(int argc, char **argv);

// Prints "vmoer <cmd>: <message>" (or the pending vm_errmsg() when fmt is NULL); returns 1.
int cli_fail(const char *cmd, const char *fmt, ...);
// Option value parsing: return 0 ok, or print a one-line error naming the flag and return -1.
int cli_long(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out);
int cli_u64(const char *cmd, const char *flag, const char *val, uint64_t *out);
// Fetches the value after argv[*i] for flag (advances *i); NULL with an error when missing.
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
// --threads N: applies it (OpenMP); returns 0 or -1.
int cli_threads(const char *cmd, const char *val);
// Output paths checked before the work (util/fileio.h vm_output_check / vm_output_dir_check): 0, or
// the one-line error printed and 1 (the exit status).
int cli_output(const char *cmd, const char *path);
int cli_output_dir(const char *cmd, const char *path, const char *const *names);
// Parses "1,2,3" into a malloc'd id list; returns count or -1 (error printed).
int cli_parse_ids(const char *cmd, const char *s, int32_t **out);
