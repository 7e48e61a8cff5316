// libFuzzer target: fit/train checkpoints (train/checkpoint.h) read back by vm_ckpt_read, through a
// temp file since it reads from a path. Input: 1 selector byte, then the checkpoint file's bytes.
// The selector picks the run reading it (the fixture below): bit 0 = validation items (2, else 0),
// bit 1 = a `vmoer train` run (no epochs) instead of a fit. A successful read must give exactly
// what a real run can have written (the rules of checkpoint.h, restated here independently); a
// failed one must leave one line naming the problem.
//
// The fixture run: two parameters (3 and 2x2 floats, so "best" holds 7), fingerprint
// CKPT_FIX_FINGERPRINT; fit: 6 steps, 3 per epoch, batch 4, 12 training items, patience 2;
// train: 6 steps. tests/test_checkpoint.c uses the same fixture for its mutation tests and writes
// the seed corpus (fuzz/corpus/checkpoint/).
#include "fuzz_common.h"
#include "gguf/gguf.h"
#include "train/checkpoint.h"
#include "util/err.h"

#include <math.h>

#define CKPT_FIX_FINGERPRINT 0x76636b7074667578ull
#define CKPT_FIX_NP 2
#define CKPT_FIX_NBEST 7

typedef struct ckpt_fix {
    float w0[3], w1[4], g0[3], g1[4];
    vm_param p[CKPT_FIX_NP];
    vm_param *pp[CKPT_FIX_NP];
    vm_adamw opt;
    float best[CKPT_FIX_NBEST];
    vm_ckpt_expect ex;
} ckpt_fix;

// The run selected by `sel` (header comment); 0, or -1 when out of memory.
static int ckpt_fix_init(ckpt_fix *f, unsigned sel) {
    memset(f, 0, sizeof *f);
    f->p[0] = (vm_param){ .name = "a", .n_dims = 1, .ne = {3, 1}, .w = f->w0, .g = f->g0 };
    f->p[1] = (vm_param){ .name = "b", .n_dims = 2, .ne = {2, 2}, .w = f->w1, .g = f->g1 };
    for (int i = 0; i < CKPT_FIX_NP; i++) f->pp[i] = &f->p[i];
    f->ex = (vm_ckpt_expect){ .total_steps = 6, .steps_per_epoch = (sel & 2) ? 0 : 3, .batch = 4, .n_train = 12,
                              .n_val = (sel & 1) ? 2 : 0, .patience = 2 };
    return vm_adamw_init(&f->opt, f->pp, NULL, CKPT_FIX_NP, 0.01f);
}

static void ckpt_fix_free(ckpt_fix *f) { vm_adamw_free(&f->opt); }

// What a successful read must satisfy (checkpoint.h), from the fixture's numbers.
static void ckpt_fix_assert_valid(const ckpt_fix *f, const vm_ckpt_state *s) {
    const vm_ckpt_expect *e = &f->ex;
    FUZZ_ASSERT(s->step >= 1 && s->step <= e->total_steps && f->opt.step == s->step);
    for (int i = 0; i < CKPT_FIX_NP; i++)
        for (int64_t j = 0; j < vm_param_numel(&f->p[i]); j++) {
            FUZZ_ASSERT(isfinite(f->p[i].w[j]) && isfinite(f->opt.m[i][j]));
            FUZZ_ASSERT(isfinite(f->opt.v[i][j]) && f->opt.v[i][j] >= 0);
        }
    for (int j = 0; j < CKPT_FIX_NBEST; j++) FUZZ_ASSERT(isfinite(f->best[j]));
    FUZZ_ASSERT(isfinite(s->ce_first) || (isnan(s->ce_first) && s->epochs_run == 0));
    if (e->steps_per_epoch == 0) {
        FUZZ_ASSERT(s->epochs_run == 0 && s->bad == 0 && s->stopped == 0 && s->ep_n == 0);
        FUZZ_ASSERT(s->best_epoch >= 0 && s->best_epoch <= s->step);
        FUZZ_ASSERT(isfinite(s->val_init) && s->best_val <= s->val_init);
        return;
    }
    const int64_t done = s->step / e->steps_per_epoch;
    FUZZ_ASSERT(s->epochs_run == done && s->ep_n == (s->step % e->steps_per_epoch) * e->batch);
    FUZZ_ASSERT(s->ep_n <= e->n_train);
    FUZZ_ASSERT(s->best_epoch >= 0 && s->best_epoch <= s->epochs_run && s->bad == s->epochs_run - s->best_epoch);
    FUZZ_ASSERT(s->bad <= e->patience && s->stopped == (s->bad >= e->patience));
    if (e->n_val > 0) {
        FUZZ_ASSERT(s->val_init >= 0 && s->best_val >= 0 && s->best_val <= s->val_init);
        FUZZ_ASSERT(s->acc_init >= 0 && s->acc_init <= 1 && s->best_acc >= 0 && s->best_acc <= 1);
    } else {
        FUZZ_ASSERT(isnan(s->val_init) && isnan(s->acc_init) && isnan(s->best_acc) && s->best_val == INFINITY);
    }
    FUZZ_ASSERT(isfinite(s->ep_ce) && s->ep_ce >= 0 && isfinite(s->ep_obj));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ckpt_fix f;
    if (ckpt_fix_init(&f, data[0])) return 0;
    char path[300];
    fuzz_tmp_path(path, sizeof path, "ckpt");
    if (fuzz_write_file(path, data + 1, size - 1) == 0) {
        vm_ckpt_state s;
        memset(&s, 0, sizeof s);
        s.fingerprint = CKPT_FIX_FINGERPRINT;
        if (vm_ckpt_read(path, &s, &f.opt, f.best, CKPT_FIX_NBEST, &f.ex) == 0) {
            ckpt_fix_assert_valid(&f, &s);
        } else {
            if (!vm_errmsg()[0] || strchr(vm_errmsg(), '\n')) fprintf(stderr, "bad message: '%s'\n", vm_errmsg());
            FUZZ_ASSERT(vm_errmsg()[0] && !strchr(vm_errmsg(), '\n'));
        }
        remove(path);
    }
    ckpt_fix_free(&f);
    vm_err_clear();
    return 0;
}
