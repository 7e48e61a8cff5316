#!/usr/bin/python3
"""Golden files for tests/test_quant.c, written from the published ggml block formats
(ggml/src/ggml-common.h block_* structs; dequantisation as in ggml-quants.c dequantize_row_*),
IEEE 754 binary16 (numpy float16) and bfloat16 (top half of a binary32, round to nearest even).
Independent of vmoer's C code. Run once with Debian's numpy:  /usr/bin/python3 tests/reference/quant_ref.py

Writes tests/golden/quant/:
  <type>.bin       R rows of N elements as raw blocks (random bytes, finite fp16 scales)
  <type>.npy       (R, N) float32 dequantised rows; float arithmetic in ggml's order, in float32
  <type>_dot.npy   (R, 2) float32: [float64 dot(dequantised row, x), sum |w_i x_i|]
  x.npy            (N,) float32 vector for the dots
  q8_0_qsrc.npy, q4_0_qsrc.npy  (R, N) float32 inputs; q8_0_q.bin, q4_0_q.bin  ggml's reference quantisation
  f16_src.npy + f16_from_f32.bin   float32 -> binary16 bits (numpy astype, round to nearest even)
  bf16_src.npy + bf16_from_f32.bin float32 -> bfloat16 bits (nearest by float64 distance, ties to even)
  f16_table.txt    FNV-1a 64 of the 65536 binary16 -> binary32 bit patterns (NaNs replaced by 0x7fc00000)
"""
import os
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "quant")
R, N = 4, 512
rng = np.random.default_rng(20240611)
f32 = np.float32


def save(name, arr):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(arr))


def savebin(name, b):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(np.ascontiguousarray(b).tobytes())


def rand_scale(n):
    """n finite fp16 scales (as uint16 bits): random sign, magnitudes 2^-14..2^-2, a few 0 and subnormal."""
    v = rng.choice([-1.0, 1.0], n) * np.exp2(rng.uniform(-14, -2, n))
    h = v.astype(np.float16).view(np.uint16).copy()
    h[rng.random(n) < 0.05] = 0
    sub = rng.random(n) < 0.05
    h[sub] = rng.integers(1, 0x400, sub.sum()) | (rng.integers(0, 2, sub.sum()) << 15)
    return h


def h2f(h):
    return np.asarray(h, dtype=np.uint16).view(np.float16).astype(f32)


# ---- formats: (block bytes, elements per block, dequantiser of an (nb, bytes) uint8 array) ----

def dq_q8_0(b):  # {half d; int8 qs[32]}: y = qs * d
    d = h2f(b[:, 0:2].copy().view(np.uint16))
    q = b[:, 2:34].view(np.int8).astype(f32)
    return (q * d).astype(f32)


def dq_q4_0(b):  # {half d; u8 qs[16]}: y[j] = (lo(qs[j]) - 8) d, y[j+16] = (hi(qs[j]) - 8) d
    d = h2f(b[:, 0:2].copy().view(np.uint16))
    qs = b[:, 2:18].astype(np.int32)
    q = np.concatenate([(qs & 15) - 8, (qs >> 4) - 8], axis=1).astype(f32)
    return (q * d).astype(f32)


def k_scales(s):
    """12-byte packed 6-bit (scale, min) pairs of q4_K/q5_K -> (nb, 8) each (ggml get_scale_min_k4)."""
    s = s.astype(np.int32)
    sc = np.zeros((s.shape[0], 8), np.int32)
    mn = np.zeros((s.shape[0], 8), np.int32)
    for j in range(4):
        sc[:, j] = s[:, j] & 63
        mn[:, j] = s[:, j + 4] & 63
        sc[:, j + 4] = (s[:, j + 8] & 15) | ((s[:, j] >> 6) << 4)
        mn[:, j + 4] = (s[:, j + 8] >> 4) | ((s[:, j + 4] >> 6) << 4)
    return sc, mn


def dq_kaffine(d, dmin, sc, mn, q):
    """y = (d*sc) * q - (dmin*m), each product and the difference rounded to float32."""
    d1 = (d * sc.astype(f32)).astype(f32)                      # (nb, 8)
    m1 = (dmin * mn.astype(f32)).astype(f32)
    y = (np.repeat(d1, 32, axis=1) * q.astype(f32)).astype(f32)
    return (y - np.repeat(m1, 32, axis=1)).astype(f32)


def dq_q4_K(b):  # {half d, dmin; u8 scales[12]; u8 qs[128]}
    d = h2f(b[:, 0:2].copy().view(np.uint16))
    dmin = h2f(b[:, 2:4].copy().view(np.uint16))
    sc, mn = k_scales(b[:, 4:16])
    qs = b[:, 16:144].astype(np.int32).reshape(-1, 4, 32)
    # chunk p of 32 bytes: sub-block 2p = low nibbles, 2p+1 = high nibbles
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 256)
    return dq_kaffine(d, dmin, sc, mn, q)


def dq_q5_K(b):  # {half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
    d = h2f(b[:, 0:2].copy().view(np.uint16))
    dmin = h2f(b[:, 2:4].copy().view(np.uint16))
    sc, mn = k_scales(b[:, 4:16])
    qh = b[:, 16:48].astype(np.int32)
    qs = b[:, 48:176].astype(np.int32).reshape(-1, 4, 32)
    lo = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32)
    hi = np.stack([(qh >> s) & 1 for s in range(8)], axis=1)   # sub-block s uses bit s of qh[l]
    q = (lo + 16 * hi).reshape(-1, 256)
    return dq_kaffine(d, dmin, sc, mn, q)


def dq_q6_K(b):  # {u8 ql[128]; u8 qh[64]; int8 scales[16]; half d}: y = (d*sc)*q, q = 6 bits - 32
    d = h2f(b[:, 208:210].copy().view(np.uint16))[:, 0]
    sc = b[:, 192:208].view(np.int8).astype(f32)
    out = np.zeros((b.shape[0], 256), f32)
    for half in range(2):
        ql = b[:, 64 * half:64 * half + 64].astype(np.int32)
        qh = b[:, 128 + 32 * half:128 + 32 * half + 32].astype(np.int32)
        for l in range(32):
            parts = [(ql[:, l] & 15), (ql[:, l + 32] & 15), (ql[:, l] >> 4), (ql[:, l + 32] >> 4)]
            for k in range(4):
                q = (parts[k] | (((qh[:, l] >> (2 * k)) & 3) << 4)) - 32
                s = sc[:, 8 * half + 2 * k + l // 16]
                out[:, 128 * half + 32 * k + l] = ((d * s).astype(f32) * q.astype(f32)).astype(f32)
    return out


def rand_blocks(nb, size, scale_at):
    b = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    for off in scale_at:
        b[:, off:off + 2] = rand_scale(nb).view(np.uint8).reshape(nb, 2)
    return b


QUANT = {  # name: (block bytes, block elements, offsets of fp16 scales, dequantiser)
    "q8_0": (34, 32, [0], dq_q8_0),
    "q4_0": (18, 32, [0], dq_q4_0),
    "q4_K": (144, 256, [0, 2], dq_q4_K),
    "q5_K": (176, 256, [0, 2], dq_q5_K),
    "q6_K": (210, 256, [208], dq_q6_K),
}


def write_dot(name, w, x):
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    save(name + "_dot.npy", np.stack([w64 @ x64, np.abs(w64 * x64).sum(axis=1)], axis=1).astype(f32))


def f16_random_bits(n):  # finite binary16 patterns, every exponent incl. subnormals
    h = rng.integers(0, 1 << 16, n, dtype=np.uint32)
    h = h[((h >> 10) & 31) != 31][:n]
    return h.astype(np.uint16)


def bf16_to_f32(h):
    return (np.asarray(h, np.uint32) << 16).view(f32)


def f32_to_bf16_ref(xs):
    """Nearest bfloat16 by float64 distance, ties to the even pattern; beyond the top, 2^128 stands for inf."""
    out = []
    for x in xs.astype(f32):
        u = int(np.array(x).view(np.uint32))
        lo = u & 0xFFFF0000
        hi = lo + 0x10000
        def val(bits):
            if (bits & 0x7FFFFFFF) == 0x7F800000:
                return np.copysign(2.0 ** 128, float(x))
            return float(np.array(bits, np.uint32).view(f32))
        if (u & 0x7FFFFFFF) >= 0x7F800000:  # inf stays inf
            out.append(u >> 16)
            continue
        dl, dh = abs(float(x) - val(lo)), abs(float(x) - val(hi))
        pick = lo if dl < dh else hi if dh < dl else (lo if ((lo >> 16) & 1) == 0 else hi)
        out.append(pick >> 16)
    return np.array(out, np.uint16)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    os.makedirs(OUT, exist_ok=True)
    x = rng.standard_normal(N).astype(f32)
    save("x.npy", x)

    # float types
    w = (rng.standard_normal((R, N)) * np.exp2(rng.integers(-20, 10, (R, N)))).astype(f32)
    w[0, :8] = [0.0, -0.0, 1e-45, -3e-39, 1.1754942e-38, 3e4, -2.5e-7, 1.0]
    savebin("f32.bin", w)
    save("f32.npy", w)
    write_dot("f32", w, x)

    h = f16_random_bits(R * N * 2)[:R * N].reshape(R, N)
    savebin("f16.bin", h)
    save("f16.npy", h2f(h))
    write_dot("f16", h2f(h), x)

    # bf16: every sign and mantissa, exponents 0..140 (subnormals included, products stay finite)
    hb = ((rng.integers(0, 2, (R, N)) << 15) | (rng.integers(0, 141, (R, N)) << 7) | rng.integers(0, 128, (R, N))).astype(np.uint16)
    savebin("bf16.bin", hb)
    save("bf16.npy", bf16_to_f32(hb))
    write_dot("bf16", bf16_to_f32(hb), x)

    for name, (size, blck, scale_at, dq) in QUANT.items():
        nb = R * N // blck
        b = rand_blocks(nb, size, scale_at)
        y = dq(b).reshape(R, N)
        savebin(name + ".bin", b)
        save(name + ".npy", y)
        write_dot(name, y, x)

    # ggml's reference Q8_0 / Q4_0 quantisers (quantize_row_q8_0_ref / quantize_row_q4_0_ref rules)
    src = (rng.standard_normal((R, N)) * np.exp2(rng.integers(-8, 6, (R, N // 32))).repeat(32, axis=1)).astype(f32)
    src[0, :32] = 0.0                            # all-zero block: d = 0
    src[0, 32:64] = np.linspace(-4, 4, 32)       # exact ties x/d = k + 0.5 occur
    src[1, :32] = -src[1, :32]
    blocks = src.reshape(-1, 32)
    q8 = np.zeros((blocks.shape[0], 34), np.uint8)
    q4 = np.zeros((blocks.shape[0], 18), np.uint8)
    for i, xb in enumerate(blocks):
        amax = np.max(np.abs(xb))
        d = f32(amax / f32(127))
        idv = f32(f32(1) / d) if d != 0 else f32(0)
        v = (xb * idv).astype(f32).astype(np.float64)
        q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)   # roundf: half away from zero
        q8[i, 0:2] = np.array([d], np.float16).view(np.uint8)
        q8[i, 2:] = q.view(np.uint8)

        mx = xb[np.argmax(np.abs(xb))]               # signed value of largest magnitude, first one
        d = f32(mx / f32(-8))
        idv = f32(f32(1) / d) if d != 0 else f32(0)
        qq = np.minimum(15, np.trunc((xb * idv).astype(f32) + f32(8.5)).astype(np.int32))
        q4[i, 0:2] = np.array([d], np.float16).view(np.uint8)
        q4[i, 2:] = (qq[:16] | (qq[16:] << 4)).astype(np.uint8)
    save("q8_0_qsrc.npy", src)
    save("q4_0_qsrc.npy", src)
    savebin("q8_0_q.bin", q8)
    savebin("q4_0_q.bin", q4)

    # float32 -> binary16: random magnitudes across the whole range, exact midpoints, edges
    a = (rng.standard_normal(700) * np.exp2(rng.uniform(-28, 17, 700))).astype(f32)
    hs = f16_random_bits(300)
    hs = hs[(hs & 0x7FFF) != 0x7BFF]                 # midpoint above 65504 would need 65536
    mids = ((h2f(hs).astype(np.float64) + h2f(hs + 1).astype(np.float64)) / 2).astype(f32)  # exact in f32
    edges = np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519.996, 65520, -65520, 1e6, 2.0 ** -24,
                      2.0 ** -25, 2.0 ** -25 * 1.0000001, -2.0 ** -25, 2.0 ** -26, 1e-10, 2.0 ** -14,
                      2.0 ** -14 * (1 - 2.0 ** -11), 6.1e-5, 1.0, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11], f32)
    fs = np.concatenate([a, mids, edges]).astype(f32)
    save("f16_src.npy", fs)
    with np.errstate(over="ignore"):  # 1e6 and 65520 overflow to inf on purpose
        savebin("f16_from_f32.bin", fs.astype(np.float16).view(np.uint16))

    # float32 -> bfloat16: random bit patterns (all exponents), ties, overflow edge
    u = rng.integers(0, 1 << 32, 1000, dtype=np.uint64).astype(np.uint32)
    u = u[(u & 0x7FFFFFFF) <= 0x7F800000]
    ties = (rng.integers(0, 1 << 16, 100, dtype=np.uint32) << 16) | 0x8000
    ties = ties[(ties & 0x7FFFFFFF) < 0x7F800000]
    bs = np.concatenate([u, ties, np.array([0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00008000, 0x00018000,
                                            0x80000001, 0x3F808000, 0x3F818000], np.uint32)]).view(f32)
    save("bf16_src.npy", bs)
    savebin("bf16_from_f32.bin", f32_to_bf16_ref(bs))

    # binary16 -> binary32 for all 65536 patterns, as one hash
    t = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(f32)
    bits = t.view(np.uint32).copy()
    bits[np.isnan(t)] = 0x7FC00000
    with open(os.path.join(OUT, "f16_table.txt"), "w") as f:
        f.write("%016x\n" % fnv1a64(bits.astype("<u4").tobytes()))


if __name__ == "__main__":
    main()
