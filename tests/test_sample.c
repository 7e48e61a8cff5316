// Sampler: greedy ties and NaN, temperature frequencies against softmax(l/T), top-k / top-p
// truncation, seed reproducibility, argument validation.
#include "model/sample.h"
#include "test.h"

#include <math.h>
#include <string.h>

int main(void) {
    float l[5] = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
    CHECK(vm_sample_argmax(l, 5) == 1, "ties go to the lowest id");
    float nan_first[3] = {NAN, -1.0f, -5.0f};
    CHECK(vm_sample_argmax(nan_first, 3) == 1, "NaN is never the argmax");
    float all_nan[2] = {NAN, NAN};
    CHECK(vm_sample_argmax(all_nan, 2) == -1, "all NaN -> -1");

    vm_sampler s;
    CHECK(vm_sampler_init(&s, 0, 0, 1, 1) == 0, "greedy init");
    CHECK(vm_sampler_sample(&s, l, 5) == 1, "temp 0 is argmax");
    CHECK(vm_sampler_sample(&s, all_nan, 2) == -1, "no finite logit is an error");
    vm_sampler_free(&s);
    CHECK(vm_sampler_init(&s, -1, 0, 1, 1) != 0, "negative temperature rejected");
    CHECK(vm_sampler_init(&s, 1, -1, 1, 1) != 0, "negative top-k rejected");
    CHECK(vm_sampler_init(&s, 1, 0, 0, 1) != 0, "top-p 0 rejected");
    CHECK(vm_sampler_init(&s, 1, 0, 1.5f, 1) != 0, "top-p > 1 rejected");

    // frequencies at T = 2: p = softmax(l / 2)
    const int n = 40000;
    double p[5], z = 0;
    for (int i = 0; i < 5; i++) z += (p[i] = exp(l[i] / 2.0));
    for (int i = 0; i < 5; i++) p[i] /= z;
    int cnt[5] = {0};
    vm_sampler_init(&s, 2, 0, 1, 42);
    for (int k = 0; k < n; k++) {
        int32_t id = vm_sampler_sample(&s, l, 5);
        if (id >= 0 && id < 5) cnt[id]++;
    }
    for (int i = 0; i < 5; i++)   // 5 standard deviations of a binomial proportion
        CHECK_NEAR(cnt[i] / (double)n, p[i], 5 * sqrt(p[i] * (1 - p[i]) / n) + 1e-9, "frequency vs softmax(l/T)");
    vm_sampler_free(&s);

    // reproducible by seed
    int32_t a[50], b[50];
    vm_sampler_init(&s, 1, 0, 1, 7);
    for (int k = 0; k < 50; k++) a[k] = vm_sampler_sample(&s, l, 5);
    vm_sampler_free(&s);
    vm_sampler_init(&s, 1, 0, 1, 7);
    for (int k = 0; k < 50; k++) b[k] = vm_sampler_sample(&s, l, 5);
    vm_sampler_free(&s);
    CHECK(!memcmp(a, b, sizeof a), "same seed, same draws");

    // top-k 2 keeps ids 1 and 2 (equal logits) in equal measure; top-k 1 is greedy
    int seen_other = 0, c1 = 0;
    vm_sampler_init(&s, 1, 2, 1, 3);
    for (int k = 0; k < 4000; k++) { int32_t id = vm_sampler_sample(&s, l, 5); seen_other |= id != 1 && id != 2; c1 += id == 1; }
    vm_sampler_free(&s);
    CHECK(!seen_other, "top-k 2 drew outside the two best");
    CHECK_NEAR(c1 / 4000.0, 0.5, 0.05, "top-k 2 renormalised over two equal logits");
    vm_sampler_init(&s, 10, 1, 1, 3);
    CHECK(vm_sampler_sample(&s, l, 5) == 1, "top-k 1 is greedy");
    vm_sampler_free(&s);

    // top-p: p = {0.6, 0.3, 0.1} at T = 1; top-p 0.8 keeps {0, 1} with 2:1 odds
    float q[3] = {logf(0.6f), logf(0.3f), logf(0.1f)};
    int cq[3] = {0};
    vm_sampler_init(&s, 1, 0, 0.8f, 9);
    for (int k = 0; k < 6000; k++) { int32_t id = vm_sampler_sample(&s, q, 3); if (id >= 0 && id < 3) cq[id]++; }
    vm_sampler_free(&s);
    CHECK(cq[2] == 0, "top-p 0.8 drew the excluded tail %d times", cq[2]);
    CHECK_NEAR(cq[0] / 6000.0, 2.0 / 3.0, 0.03, "top-p renormalised mass");
    return TEST_SUMMARY();
}
