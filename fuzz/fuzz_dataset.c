// libFuzzer target: the MCQA dataset readers (dataset.h) on arbitrary bytes. The first byte picks
// the format (and with it a realistic path) and the options; the rest is the file. A successful
// load must give items that keep the header's promises.
#include "fuzz_common.h"
#include "data/dataset.h"
#include "util/err.h"

// Paths as the real files are named, so auto-detection and the MMLU subject logic run too.
static const char *const paths_[] = {
    "openbookqa/test.jsonl", "arc-easy/dev.jsonl", "sciq/validation.jsonl", "medmcqa/dev.jsonl",
    "mmlu/dev/abstract_algebra_dev.csv", "mine/items.jsonl", "weird", "x/_test.csv",
};

static void check_item(const vm_mcq_item *it) {
    FUZZ_ASSERT(it->id && it->question && it->question[0]);
    FUZZ_ASSERT(it->n_choices >= VM_MCQ_MIN_CHOICES && it->n_choices <= VM_MCQ_MAX_CHOICES);
    FUZZ_ASSERT(it->answer >= 0 && it->answer < it->n_choices);
    FUZZ_ASSERT(it->line >= 1);
    for (int c = 0; c < it->n_choices; c++) {
        FUZZ_ASSERT(it->choices[c] && it->choices[c][0] && it->labels[c] && it->labels[c][0]);
        size_t n = strlen(it->choices[c]);
        FUZZ_ASSERT(vm_dataset_utf8_check(it->choices[c], n) == n);
    }
    size_t q = strlen(it->question);
    FUZZ_ASSERT(vm_dataset_utf8_check(it->question, q) == q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    vm_dataset_opts o;
    vm_dataset_opts_default(&o);
    // bits 0-2 format (0 and 7: auto), 3-5 path for auto, 6 skip_bad, 7 shuffle + limit (+ subject: bit 3)
    o.format = (sel & 7) == 7 ? VM_MCQ_FORMAT_AUTO : (vm_mcq_format)(sel & 7);
    const char *path = o.format == VM_MCQ_FORMAT_AUTO ? paths_[(sel >> 3) & 7]
                                                      : paths_[o.format - 1];
    o.skip_bad = (sel >> 6) & 1;
    if (sel & 0x80) { o.shuffle = 1; o.seed = sel; o.limit = 3; o.subject = (sel & 0x08) ? "abstract_algebra" : NULL; }

    size_t v = vm_dataset_utf8_check(buf, len);
    FUZZ_ASSERT(v <= len);
    vm_mcq_format det = vm_mcq_format_detect(path, buf, len);
    FUZZ_ASSERT((int)det >= VM_MCQ_FORMAT_AUTO && det <= VM_MCQ_FORMAT_JSONL);
    vm_err_clear();

    vm_dataset ds;
    if (vm_dataset_load_buf(&ds, path, buf, len, &o) == 0) {
        FUZZ_ASSERT(ds.n >= 1 && ds.items && ds.name);
        FUZZ_ASSERT(!o.limit || ds.n <= o.limit);
        FUZZ_ASSERT(o.skip_bad || ds.n_bad == 0);
        for (size_t i = 0; i < ds.n; i++) check_item(&ds.items[i]);
        for (size_t i = 0; i < ds.n_bad && i < VM_DATASET_MAX_BAD_MSGS; i++) FUZZ_ASSERT(ds.bad_msgs[i]);
        vm_dataset_free(&ds);
    } else {
        FUZZ_ASSERT(vm_errmsg()[0] && ds.n == 0 && ds.items == NULL);
    }
    vm_err_clear();
    return 0;
}
