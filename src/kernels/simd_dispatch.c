// Level detection and selection. The level is read once (lazily) and then only changed by
// vm_simd_set, so every kernel call of a forward pass uses the same one.
#include "kernels/simd.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"

#ifdef VM_SIMD_X86
#include <cpuid.h>
// F16C by CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c").
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

// AVX-VNNI (VEX vpdpbusd) by CPUID leaf 7 sub-leaf 1, EAX bit 4.
static int has_avxvnni(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}
#endif

static const char *const names[VM_SIMD_COUNT] = {"scalar", "avx2", "avxvnni", "avx512"};
static int current = -1;

const char *vm_simd_name(vm_simd_level level) {
    return (unsigned)level < VM_SIMD_COUNT ? names[level] : "?";
}

int vm_simd_supported(vm_simd_level level) {
    switch (level) {
    case VM_SIMD_SCALAR: return 1;
#ifdef VM_SIMD_X86
    case VM_SIMD_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case VM_SIMD_AVXVNNI:
        return vm_simd_supported(VM_SIMD_AVX2) && has_avxvnni();
    case VM_SIMD_AVX512:
        return vm_simd_supported(VM_SIMD_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#endif
    default: return 0;
    }
}

// The best supported level (tests/test_simd.c checks every supported level against the portable one).
vm_simd_level vm_simd_detect(void) {
    for (int l = VM_SIMD_COUNT - 1; l > 0; l--)
        if (vm_simd_supported((vm_simd_level)l)) return (vm_simd_level)l;
    return VM_SIMD_SCALAR;
}

vm_simd_level vm_simd_get(void) {
    int c = __atomic_load_n(&current, __ATOMIC_RELAXED);
    if (c >= 0) return (vm_simd_level)c;
    c = vm_simd_detect();
    const char *env = getenv("VMOER_SIMD");
    if (env)
        for (int l = 0; l < VM_SIMD_COUNT; l++)
            if (!strcasecmp(env, names[l]) && vm_simd_supported((vm_simd_level)l)) c = l;
    __atomic_store_n(&current, c, __ATOMIC_RELAXED);
    return (vm_simd_level)c;
}

int vm_simd_set(vm_simd_level level) {
    if ((unsigned)level >= VM_SIMD_COUNT || !vm_simd_supported(level))
        return vm_err("simd: level %s not supported by this CPU", vm_simd_name(level));
    __atomic_store_n(&current, (int)level, __ATOMIC_RELAXED);
    return 0;
}

const vm_simd_kernels *vm_simd_kernels_get(vm_simd_level level) {
    switch (level) {
    case VM_SIMD_SCALAR: return &vm_simd_scalar;
#ifdef VM_SIMD_X86
    case VM_SIMD_AVX2: return &vm_simd_avx2;
    case VM_SIMD_AVXVNNI: return &vm_simd_avxvnni;
    case VM_SIMD_AVX512: return &vm_simd_avx512;
#endif
    default: return NULL;
    }
}
