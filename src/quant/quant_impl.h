// Internals shared by the src/quant/*.c files: block sizes, unaligned little-endian reads,
// the packed 6-bit scales of Q4_K/Q5_K.
#pragma once
#include <stdint.h>
#include <string.h>

enum { QB_Q8_0 = 34, QB_Q4_0 = 18, QB_Q4_K = 144, QB_Q5_K = 176, QB_Q6_K = 210 };

// GGUF is little-endian, as is every host we build for; memcpy makes unaligned reads legal.
static inline uint16_t rd_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float rd_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static inline void wr_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// Inline versions of vm_fp16_to_fp32 / vm_bf16_to_fp32 for the hot loops (exact, no table).
// The half's exponent+mantissa bits placed under a float's are the value times 2^-112 for
// normal and subnormal halfs alike (a half subnormal becomes a float subnormal), so one exact
// multiply by 2^112 rebases them; only inf/NaN need their own exponent. Requires subnormals to be
// honoured (no flush-to-zero / denormals-are-zero, i.e. no -ffast-math startup code).
static inline float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = (uint32_t)(h & 0x7fff) << 13;
    float f = bits_f32(em) * 0x1p112f;
    uint32_t u; memcpy(&u, &f, 4);
    if ((h & 0x7c00) == 0x7c00) u = em | 0x7f800000u;  // inf, NaN (payload kept)
    return bits_f32(u | sign);
}
static inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

// Q4_K/Q5_K pack 8 (scale, min) pairs of 6 bits into 12 bytes: bytes 0-3 hold scales 0-3 (low 6 bits),
// bytes 4-7 mins 0-3; bytes 8-11 hold the low 4 bits of scale j+4 (low nibble) and min j+4 (high
// nibble), whose top 2 bits sit in the spare top bits of bytes j (scale) and j+4 (min).
static inline void vm_kscale_get(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}
