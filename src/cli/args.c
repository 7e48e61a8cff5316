#include "cli/cli.h"
#include "util/err.h"
#include "util/fileio.h"

#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, const char *fmt, ...) {
    char buf[2048];
    const char *msg = buf;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
    } else {   // the library's message; "fit: ..." under `vmoer fit` would name the command twice
        msg = vm_errmsg();
        const size_t n = strlen(cmd);
        if (!strncmp(msg, cmd, n) && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    }
    // one line of printable text whatever the arguments or files held (util/err.h vm_escape)
    fprintf(stderr, "vmoer %s: ", cmd);
    vm_fput_escaped(stderr, msg, strlen(msg));
    fputc('\n', stderr);
    return 1;
}

int cli_long(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        cli_fail(cmd, "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= lo && v <= hi)) {
        cli_fail(cmd, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_u64(const char *cmd, const char *flag, const char *val, uint64_t *out) {
    char *end;
    errno = 0;
    if (val[0] == '-') { cli_fail(cmd, "%s expects a non-negative integer, got '%s'", flag, val); return -1; }
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end) { cli_fail(cmd, "%s expects a non-negative integer, got '%s'", flag, val); return -1; }
    *out = v;
    return 0;
}

int cli_output(const char *cmd, const char *path) {
    return vm_output_check(path) ? cli_fail(cmd, NULL) : 0;
}

int cli_output_dir(const char *cmd, const char *path, const char *const *names) {
    return vm_output_dir_check(path, names) ? cli_fail(cmd, NULL) : 0;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) { cli_fail(cmd, "%s needs a value", argv[*i]); return NULL; }
    return argv[++*i];
}

int cli_threads(const char *cmd, const char *val) {
    long n;
    if (cli_long(cmd, "--threads", val, 1, 1024, &n)) return -1;
    omp_set_num_threads((int)n);
    return 0;
}

int cli_parse_ids(const char *cmd, const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    if (!ids) { cli_fail(cmd, "out of memory"); return -1; }
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            cli_fail(cmd, "--ids: bad token id at '%s' (expected comma-separated non-negative integers)", p);
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *nid = realloc(ids, sizeof *ids * (size_t)(cap *= 2));
            if (!nid) { free(ids); cli_fail(cmd, "out of memory"); return -1; }
            ids = nid;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
        if (*end && !*p) { cli_fail(cmd, "--ids: trailing comma"); free(ids); return -1; }
    }
    if (n == 0) { cli_fail(cmd, "--ids: no token ids given"); free(ids); return -1; }
    *out = ids;
    return n;
}
