// Memory behaviour of a large-ish MoE: weights stay in the file mapping. Builds (in a child
// process, so its buffers do not count towards our peak) an upcycled stories260K with 64 experts
// (~42 MB f32), loads it and checks from /proc/self/status:
//   load:  VmRSS grows by far less than the file (nothing is read or copied eagerly);
//   eval:  2 tokens make only a fraction of the file resident (unselected experts untouched);
//          VmHWM <= baseline + file size + activations + slack (no second copy of the weights);
//          RssAnon <= baseline + activations + slack (weights are file-backed pages, not heap).
// "activations" is an upper estimate from the shapes: KV cache + per-token scratch + all logits.
// Slack: 6 MB (allocator arenas, OpenMP thread stacks, tokenizer, page-table noise); under
// AddressSanitizer the shadow and quarantine are added on top, so the bounds are widened there.
#include "convert/convert.h"
#include "model/model.h"
#include "util/err.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') { v = atol(line + n + 1); break; }
    if (f) fclose(f);
    return v;
}

int main(void) {
    const char *td = getenv("TMPDIR");
    char dir[256], bin[512], tokf[512], dense[600], moe[600];
    snprintf(dir, sizeof dir, "%s/vmoer_memory_XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", test_shared_dir());
    snprintf(tokf, sizeof tokf, "%s/models/tok512.bin", test_shared_dir());
    snprintf(dense, sizeof dense, "%s/dense.gguf", dir);
    snprintf(moe, sizeof moe, "%s/moe64.gguf", dir);
    const int N = 64, K = 2;

    pid_t pid = fork();
    if (pid == 0) {
        vm_upcycle_opts o = {N, K, 0.01f, VM_UPCYCLE_ROUTER_STD, 1};
        int rc = vm_convert_llama2c(bin, tokf, dense, VM_TYPE_F32, NULL) || vm_upcycle(dense, moe, &o);
        if (rc) fprintf(stderr, "build: %s\n", vm_errmsg());
        _exit(rc ? 1 : 0);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "building the MoE file failed");
    struct stat sb;
    CHECK(stat(moe, &sb) == 0 && sb.st_size > 30L * 1024 * 1024, "MoE file of tens of MB");
    long file_kb = (long)(sb.st_size / 1024);

    // Drop the file's (clean, fsync'd) page cache so residency below reflects what the model reads,
    // not what the writer left cached: the kernel maps whole cached large folios on a fault.
    int fd = open(moe, O_RDONLY);
    if (fd >= 0) { posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); close(fd); }

    long rss0 = status_kb("VmRSS"), anon0 = status_kb("RssAnon"), hwm0 = status_kb("VmHWM");
    vm_model *m = vm_model_load(moe);
    CHECK(m != NULL, "load: %s", vm_errmsg());
    if (m) {
        long rss1 = status_kb("VmRSS");
        printf("file %ld kB; baseline RSS %ld kB (anon %ld, HWM %ld); after load +%ld kB\n",
               file_kb, rss0, anon0, hwm0, rss1 - rss0);
        CHECK(rss1 - rss0 < file_kb / 8 + (ASAN ? 8192 : 0), "load grew RSS by %ld kB of a %ld kB file", rss1 - rss0, file_kb);
        CHECK(m->hp.n_expert == N && m->hp.n_expert_used == K, "experts %d used %d", m->hp.n_expert, m->hp.n_expert_used);

        // a prompt of 48 tokens (ids of ordinary pieces), evaluated as one batch with all logits kept
        const int T = 48, n_ctx = 64;
        int32_t ids[48];
        ids[0] = 1;
        for (int i = 1; i < T; i++) ids[i] = 259 + (i * 37) % 250;
        const vm_hparams *hp = &m->hp;
        long kv = 2L * hp->n_layer * n_ctx * (hp->n_embd / hp->n_head * hp->n_head_kv) * 4;
        long big = hp->n_vocab > hp->n_ff ? hp->n_vocab : hp->n_ff;
        if (hp->n_embd > big) big = hp->n_embd;
        long scratch = (long)T * (12L * big + 4L * hp->n_expert + (long)n_ctx) * 4;  // per-token buffers, generously
        long logits = (long)T * hp->n_vocab * 4;
        long act_kb = (kv + scratch + 2 * logits) / 1024 + 1;
        long slack_kb = 6 * 1024 + (ASAN ? 16 * 1024 : 0);
        float *out = malloc((size_t)T * (size_t)hp->n_vocab * sizeof *out);
        vm_ctx *c = vm_ctx_init(m, n_ctx, T);
        // No readahead from here on, so a fault makes only the touched page resident.
        madvise(m->gguf->map.data, m->gguf->map.size, MADV_RANDOM);
        // Two tokens route to at most 2K experts per layer: only those slices (plus the kernel's
        // fault-around of neighbouring cached pages) may become resident.
        long file0 = status_kb("RssFile");
        CHECK(c && out && vm_ctx_eval(c, ids, 2, out) == 0, "eval: %s", vm_errmsg());
        long file2 = status_kb("RssFile");
        printf("2 tokens: RssFile +%ld kB of %ld kB\n", file2 - file0, file_kb);
        CHECK(file2 - file0 < file_kb / 2, "2 tokens made %ld kB of the %ld kB file resident (unselected experts read?)",
              file2 - file0, file_kb);
        CHECK(c && vm_ctx_eval(c, ids + 2, T - 2, out + 2 * hp->n_vocab) == 0, "eval: %s", vm_errmsg());
        long hwm = status_kb("VmHWM"), anon = status_kb("RssAnon"), rssf = status_kb("RssFile");
        printf("after eval: VmHWM %ld kB (bound %ld), RssAnon %ld kB (+%ld, bound +%ld), RssFile %ld kB; activations <= %ld kB\n",
               hwm, hwm0 + file_kb + act_kb + slack_kb, anon, anon - anon0, act_kb + slack_kb, rssf, act_kb);
        CHECK(hwm <= (hwm0 > rss0 ? hwm0 : rss0) + file_kb + act_kb + slack_kb, "peak RSS %ld kB above bound", hwm);
        CHECK(anon - anon0 <= act_kb + slack_kb, "anonymous RSS grew by %ld kB (activations %ld kB + slack %ld kB)",
              anon - anon0, act_kb, slack_kb);
        if (c) vm_ctx_free(c);
        free(out);
        vm_model_free(m);
    }
    remove(moe); remove(dense); rmdir(dir);
    return TEST_SUMMARY();
}
