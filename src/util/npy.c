#include "util/npy.h"
#include "util/err.h"
#include "util/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vm_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    char hdr[256], dims[160] = "";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        char d[32];
        snprintf(d, sizeof d, "%lld%s", (long long)shape[i], (ndim == 1 || i + 1 < ndim) ? ", " : "");
        strncat(dims, d, sizeof dims - strlen(dims) - 1);
        if (vm_size_mul(count, (size_t)shape[i], &count)) return -1;
    }
    if (ndim == 1) dims[strlen(dims) - 1] = 0;  // "(n,)"
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    vm_afile a;
    if (vm_afile_open(&a, path)) return -1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    unsigned hl = (unsigned)(n + pad + 1);
    pre[8] = (unsigned char)(hl & 0xff); pre[9] = (unsigned char)(hl >> 8);
    fwrite(pre, 1, 10, a.f);
    fwrite(hdr, 1, (size_t)n, a.f);
    for (int i = 0; i < pad; i++) fputc(' ', a.f);
    fputc('\n', a.f);
    if (count) fwrite(data, sizeof(float), count, a.f);
    return vm_afile_commit(&a);
}

int vm_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[4]) {
    size_t len;
    char *buf = vm_read_file(path, &len);
    if (!buf) return -1;
    int rc = -1;
    *data = NULL;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) { vm_err("%s: not a .npy file", path); goto out; }
    size_t hl = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8), off = 10;
    if (buf[6] >= 2) {   // version 2+: 4-byte header length
        if (len < 12) { vm_err("%s: truncated header", path); goto out; }
        hl = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8) |
             ((size_t)(unsigned char)buf[10] << 16) | ((size_t)(unsigned char)buf[11] << 24);
        off = 12;
    }
    if (hl == 0 || off + hl > len) { vm_err("%s: truncated header", path); goto out; }
    char *h = buf + off;
    char save = h[hl - 1]; h[hl - 1] = 0;
    if (!strstr(h, "'<f4'") || strstr(h, "'fortran_order': True")) { vm_err("%s: expected C-order <f4", path); goto out; }
    char *s = strstr(h, "'shape': (");
    if (!s) { vm_err("%s: no shape", path); goto out; }
    s += 10;
    *ndim = 0;
    size_t count = 1;
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *e;
        long long v = strtoll(s, &e, 10);
        if (e == s || v < 0 || *ndim >= 4) { vm_err("%s: bad shape", path); goto out; }
        shape[(*ndim)++] = v;
        if (vm_size_mul(count, (size_t)v, &count)) goto out;
        s = e;
    }
    h[hl - 1] = save;
    off += hl;
    if (count > (len - off) / 4) { vm_err("%s: truncated data", path); goto out; }
    *data = vm_malloc(count * 4);
    if (!*data) goto out;
    memcpy(*data, buf + off, count * 4);
    rc = 0;
out:
    free(buf);
    return rc;
}
