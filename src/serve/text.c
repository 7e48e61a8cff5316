// The text of an answer as its tokens arrive (text.h).
#include "serve/text.h"
#include "gen/gen_json.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

void srv_text_free(srv_text *t) {
    free(t->buf);
    free(t->out);
    *t = (srv_text){0};
}

static int grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return vm_err("serve: out of memory");
    *p = q; *cap = c;
    return 0;
}

// Bytes at the end of s[0..n) that start a UTF-8 character still missing bytes (0 when none).
static size_t incomplete_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        const unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue;          // a continuation byte: look further back
        const size_t want = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return want > k ? k : 0;
    }
    return 0;
}

// Gives out buf[sent..upto), repaired, appended to out.
static int give(srv_text *t, size_t upto, const char **seg, size_t *seg_len) {
    *seg = t->out ? t->out + t->out_len : "";
    *seg_len = 0;
    if (upto <= t->sent) return 0;
    size_t n;
    char *r = vm_utf8_repair(t->buf + t->sent, upto - t->sent, &n);
    if (!r || grow(&t->out, &t->out_cap, t->out_len + n + 1)) { free(r); return -1; }
    memcpy(t->out + t->out_len, r, n + 1);
    free(r);
    *seg = t->out + t->out_len;
    *seg_len = n;
    t->out_len += n;
    t->sent = upto;
    return 0;
}

int srv_text_add(srv_text *t, const char *piece, size_t n, char *const *stop, int n_stop,
                 const char **seg, size_t *seg_len) {
    *seg = ""; *seg_len = 0;
    if (t->stopped) return 0;
    if (grow(&t->buf, &t->cap, t->len + n + 1)) return -1;
    memcpy(t->buf + t->len, piece, n);
    t->len += n;
    t->buf[t->len] = 0;
    // the earliest stop string, searched from the first byte not yet given out
    size_t hit = t->len;
    for (int i = 0; i < n_stop; i++) {
        const size_t sl = strlen(stop[i]);
        const char *p = sl ? memmem(t->buf + t->sent, t->len - t->sent, stop[i], sl) : NULL;
        if (p && (size_t)(p - t->buf) < hit) hit = (size_t)(p - t->buf);
    }
    if (hit < t->len) { t->stopped = 1; return give(t, hit, seg, seg_len); }
    // hold back the longest end of the text that begins a stop string
    size_t hold = 0;
    for (int i = 0; i < n_stop; i++) {
        const size_t sl = strlen(stop[i]);
        for (size_t k = sl > 0 ? sl - 1 : 0; k > hold; k--)
            if (k <= t->len - t->sent && !memcmp(t->buf + t->len - k, stop[i], k)) { hold = k; break; }
    }
    size_t upto = t->len - hold;
    upto -= incomplete_tail(t->buf + t->sent, upto - t->sent);
    return give(t, upto, seg, seg_len);
}

int srv_text_finish(srv_text *t, const char **seg, size_t *seg_len) {
    if (t->stopped) { *seg = ""; *seg_len = 0; return 0; }
    return give(t, t->len, seg, seg_len);
}
