/* The library's own GEMM for AVX-512 CPUs, float32 and bfloat16.
 *
 * Why: Debian 12's OpenBLAS (0.3.21) runs its Haswell (AVX2) kernels on the
 * AVX-512 CPUs it does not know and has no bf16 GEMM; oneDNN and libxsmm, which
 * do, come without a static library (oneDNN) or only as one (libxsmm). A
 * register-blocked AVX-512 kernel is short, needs nothing, and packs its
 * operands the way the convolutions need (docs/performance.md has the
 * measurements).
 *
 * The usual three-level blocking: for each block of KC rows of B, a block of
 * up to MC rows of op(A) is packed into panels of MR rows (k-major), each
 * run of NR columns of op(B) is packed into one panel (k-major), and the
 * micro-kernel computes an MR x NR tile of C in 24 zmm registers: per k, three
 * vector loads of B, MR broadcasts of A and 24 fused multiply-adds.
 *
 * bf16: the same blocking over pairs of k. A pair (k even, k odd) of an
 * operand's bf16 values fills one 32-bit lane; vdpbf16ps multiplies the pairs
 * of A and B lane by lane and adds both products into the float32 lane.
 *
 * Every element of C is summed in the same order: k blocks in turn, k (or k
 * pairs) in order inside a block, starting from zero, the block's sum then
 * added to C. Edge tiles are computed into a buffer by the same kernel. So
 * the bits of an element do not depend on M, N or where the element is. */
#include "gemm_avx512.h"

#include <stdint.h>
#include <string.h>

#define MR 8    /* rows of a C tile */
#define NR 48   /* columns of a C tile: three zmm */
#define KC GEMM_KC /* k (bf16: k pairs) per block: a B panel of KC x NR floats stays in L1 */
#define MC 192  /* rows of op(A) packed at once: MC x KC floats stay in L2 */
/* Up to this many rows of op(A) a full panel of an untransposed B is read
 * in place, not packed: with few tiles of A to use it, copying the panel
 * cost more than reading it from L2; from here on it is even (measured:
 * docs/performance.md, "Transposes in registers"). */
#define B_IN_PLACE_ROWS 128

size_t gemm_avx512_buffer_floats(void)
{
    return (size_t)MC * KC + (size_t)KC * NR + (size_t)MR * NR;
}

float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        u |= 0x00400000u;   // NaN: keep it a (quiet) NaN
    else
        u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "transpose16.h"

#define TARGET_F32 __attribute__((target("avx512f")))
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

int gemm_avx512_available(int bf16)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f"))
        return 0;
    return !bf16 || __builtin_cpu_supports("avx512bf16");
}

/* ---- micro-kernels: C tile (MR, NR) = sum over k of A panel x B panel (+ C) ---- */

#define TILE_ZERO(r)                                                                       \
    __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps(),                  \
           c##r##2 = _mm512_setzero_ps();
#define TILE_STORE(r)                                                                      \
    {                                                                                      \
        float *p = c + (size_t)(r) * ldc;                                                  \
        if (accumulate) {                                                                  \
            c##r##0 = _mm512_add_ps(c##r##0, _mm512_loadu_ps(p));                          \
            c##r##1 = _mm512_add_ps(c##r##1, _mm512_loadu_ps(p + 16));                     \
            c##r##2 = _mm512_add_ps(c##r##2, _mm512_loadu_ps(p + 32));                     \
        }                                                                                  \
        _mm512_storeu_ps(p, c##r##0);                                                      \
        _mm512_storeu_ps(p + 16, c##r##1);                                                 \
        _mm512_storeu_ps(p + 32, c##r##2);                                                 \
    }
#define ALL_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define F32_ROW(r)                                                                         \
    {                                                                                      \
        __m512 a = _mm512_set1_ps(ap[r]);                                                  \
        c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                                         \
        c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);                                         \
        c##r##2 = _mm512_fmadd_ps(a, b2, c##r##2);                                         \
    }
/* ap is (kc, MR), bp is (kc, NR) with rows ldbp apart (NR when packed, B's
 * own leading dimension when read in place), c is (MR, NR) with leading
 * dimension ldc. */
TARGET_F32 static void kernel_f32(int kc, const float *restrict ap, const float *restrict bp,
                                  size_t ldbp, float *c, size_t ldc, int accumulate)
{
    ALL_ROWS(TILE_ZERO)
    for (int k = 0; k < kc; k++, ap += MR, bp += ldbp) {
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        __m512 b2 = _mm512_loadu_ps(bp + 32);
        ALL_ROWS(F32_ROW)
    }
    ALL_ROWS(TILE_STORE)
}

#define BF16_ROW(r)                                                                        \
    {                                                                                      \
        __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r]);                              \
        c##r##0 = _mm512_dpbf16_ps(c##r##0, a, b0);                                        \
        c##r##1 = _mm512_dpbf16_ps(c##r##1, a, b1);                                        \
        c##r##2 = _mm512_dpbf16_ps(c##r##2, a, b2);                                        \
    }
/* ap is (kp, MR) pairs, bp is (kp, NR) pairs, c as above. */
TARGET_BF16 static void kernel_bf16(int kp, const uint32_t *restrict ap,
                                    const uint32_t *restrict bp, float *c, size_t ldc,
                                    int accumulate)
{
    ALL_ROWS(TILE_ZERO)
    for (int k = 0; k < kp; k++, ap += MR, bp += NR) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp);
        __m512bh b1 = (__m512bh)_mm512_load_si512(bp + 16);
        __m512bh b2 = (__m512bh)_mm512_load_si512(bp + 32);
        ALL_ROWS(BF16_ROW)
    }
    ALL_ROWS(TILE_STORE)
}

/* ---- packing helpers ---------------------------------------------------------- */

static inline __mmask16 lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1);
}

/* rows [0, nrow) of src (leading dimension ld), w <= 16 floats each, transposed:
 * r[j] lane i = src[i][j]; lanes and vectors beyond the data are zero. */
TARGET_F32 static inline __attribute__((always_inline)) void
load_transposed(const float *src, size_t ld, int nrow, int w, __m512 r[16])
{
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        r[i] = i < nrow ? _mm512_maskz_loadu_ps(lanes(w), src + (size_t)i * ld)
                        : _mm512_setzero_ps();
    transpose16(r);
}

/* 32 floats of a row (w valid) as 16 bf16 pairs in 32-bit lanes: in order,
 * bf16 values k0..k31 are the pairs (k0,k1), (k2,k3), ... */
TARGET_BF16 static __m512 row_pairs(const float *src, int w)
{
    __m512 lo = _mm512_maskz_loadu_ps(lanes(w), src);
    __m512 hi = _mm512_maskz_loadu_ps(lanes(w - 16), src + 16);
    return (__m512)_mm512_cvtne2ps_pbh(hi, lo);
}

/* Lane i: the pair (even[i], odd[i]) in bf16. */
TARGET_BF16 static __m512i interleave_pairs(__m512 even, __m512 odd)
{
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(odd, even));
}

/* ---- packing, float32 --------------------------------------------------------- */

/* op(A) rows [0,mc) x k [0,kc) into panels of MR rows, ap[panel][k][r]; rows
 * past mc are zero. A is (mc,kc) with leading dimension lda, or (kc,mc)
 * when transposed. */
TARGET_F32 static void pack_a_f32(int ta, const float *A, size_t lda, int mc, int kc, float *ap)
{
    for (int p = 0; p < mc; p += MR, ap += (size_t)MR * kc) {
        const int mr = mc - p < MR ? mc - p : MR;
        if (ta) {   // A^T's rows are k: MR contiguous floats per k
            for (int k = 0; k < kc; k++)
                _mm256_store_ps(ap + (size_t)k * MR, _mm512_castps512_ps256(_mm512_maskz_loadu_ps(
                                                         lanes(mr), A + (size_t)k * lda + p)));
            continue;
        }
        for (int k0 = 0; k0 < kc; k0 += 16) {
            __m512 r[16];
            const int w = kc - k0 < 16 ? kc - k0 : 16;
            load_transposed(A + (size_t)p * lda + k0, lda, mr, w, r);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)   // (unrolled with a test: r stays in registers)
                if (j < w)
                    _mm256_store_ps(ap + (size_t)(k0 + j) * MR, _mm512_castps512_ps256(r[j]));
        }
    }
}

/* op(B) k [0,kc) x columns [0,nr) into bp[k][c] (NR columns, zero past nr).
 * B is (kc,nr) with leading dimension ldb, or (nr,kc) when transposed. */
TARGET_F32 static void pack_b_f32(int tb, const float *B, size_t ldb, int kc, int nr, float *bp)
{
    if (!tb) {
        for (int k = 0; k < kc; k++)
            for (int v = 0; v < NR / 16; v++)
                _mm512_store_ps(bp + (size_t)k * NR + 16 * v,
                                _mm512_maskz_loadu_ps(lanes(nr - 16 * v), B + (size_t)k * ldb + 16 * v));
        return;
    }
    for (int cb = 0; cb < NR; cb += 16)
        for (int k0 = 0; k0 < kc; k0 += 16) {
            __m512 r[16];
            const int w = kc - k0 < 16 ? kc - k0 : 16;
            load_transposed(B + (size_t)cb * ldb + k0, ldb, nr - cb, w, r);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                if (j < w)
                    _mm512_store_ps(bp + (size_t)(k0 + j) * NR + cb, r[j]);
        }
}

/* ---- packing, bf16: ap[panel][k pair][r], bp[k pair][c], one pair per lane ---- */

TARGET_BF16 static void pack_a_bf16(int ta, const float *A, size_t lda, int mc, int kc,
                                    uint32_t *ap)
{
    const int kp = (kc + 1) / 2;
    for (int p = 0; p < mc; p += MR, ap += (size_t)MR * kp) {
        const int mr = mc - p < MR ? mc - p : MR;
        if (ta) {   // A^T's rows 2k and 2k+1, MR columns each
            for (int k = 0; k < kp; k++) {
                const float *s = A + (size_t)(2 * k) * lda + p;
                __m512 even = _mm512_maskz_loadu_ps(lanes(mr), s);
                __m512 odd = 2 * k + 1 < kc ? _mm512_maskz_loadu_ps(lanes(mr), s + lda)
                                            : _mm512_setzero_ps();
                _mm256_store_si256((__m256i *)(ap + (size_t)k * MR),
                                   _mm512_castsi512_si256(interleave_pairs(even, odd)));
            }
            continue;
        }
        for (int k0 = 0; k0 < kc; k0 += 32) {
            __m512 r[16];
            const int w = kc - k0 < 32 ? kc - k0 : 32;
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = i < mr ? row_pairs(A + (size_t)(p + i) * lda + k0, w) : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                if (j < (w + 1) / 2)
                    _mm256_store_ps((float *)(ap + (size_t)(k0 / 2 + j) * MR),
                                    _mm512_castps512_ps256(r[j]));
        }
    }
}

TARGET_BF16 static void pack_b_bf16(int tb, const float *B, size_t ldb, int kc, int nr,
                                    uint32_t *bp)
{
    const int kp = (kc + 1) / 2;
    if (!tb) {   // rows 2k and 2k+1 interleaved
        for (int k = 0; k < kp; k++) {
            const float *s = B + (size_t)(2 * k) * ldb;
            const int has_odd = 2 * k + 1 < kc;
            for (int v = 0; v < NR / 16; v++) {
                const __mmask16 m = lanes(nr - 16 * v);
                __m512 even = _mm512_maskz_loadu_ps(m, s + 16 * v);
                __m512 odd = has_odd ? _mm512_maskz_loadu_ps(m, s + ldb + 16 * v)
                                     : _mm512_setzero_ps();
                _mm512_store_si512(bp + (size_t)k * NR + 16 * v, interleave_pairs(even, odd));
            }
        }
        return;
    }
    for (int cb = 0; cb < NR; cb += 16)
        for (int k0 = 0; k0 < kc; k0 += 32) {
            __m512 r[16];
            const int w = kc - k0 < 32 ? kc - k0 : 32;
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = cb + i < nr ? row_pairs(B + (size_t)(cb + i) * ldb + k0, w)
                                   : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                if (j < (w + 1) / 2)
                    _mm512_store_ps((float *)(bp + (size_t)(k0 / 2 + j) * NR + cb), r[j]);
        }
}

/* ---- the driver ----------------------------------------------------------------- */

/* C (mr, nr) = tile (+ C): the valid part of an edge tile, 16 columns at a
 * time under a mask. */
TARGET_F32 static void store_edge(const float *tile, float *C, size_t ldc, int mr, int nr,
                                  int accumulate)
{
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c += 16) {
            const __mmask16 m = lanes(nr - c);
            float *out = C + (size_t)r * ldc + c;
            __m512 v = _mm512_load_ps(tile + r * NR + c);
            if (accumulate)
                v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), v);
            _mm512_mask_storeu_ps(out, m, v);
        }
}

/* The packed A rows [ic, ic+mc) times columns [jc, jc+nr) of op(B), k block
 * pc, whose rows are ldbp apart in bpk (fp32 only; bf16's are packed). */
static void tile_row(int bf16, int mc, int nr, int kc, const float *apk, const float *bpk,
                     size_t ldbp, float *C, size_t ldc, int accumulate, float *tile)
{
    const int steps = bf16 ? (kc + 1) / 2 : kc;   // k, or k pairs
    for (int ir = 0; ir < mc; ir += MR) {
        const int mr = mc - ir < MR ? mc - ir : MR;
        const float *ap = apk + (size_t)ir * steps;
        const int full = mr == MR && nr == NR;
        float *out = full ? C + (size_t)ir * ldc : tile;
        const size_t ld = full ? ldc : NR;
        if (bf16)
            kernel_bf16(steps, (const uint32_t *)ap, (const uint32_t *)bpk, out, ld,
                        full && accumulate);
        else
            kernel_f32(steps, ap, bpk, ldbp, out, ld, full && accumulate);
        if (!full)
            store_edge(tile, C + (size_t)ir * ldc, ldc, mr, nr, accumulate);
    }
}

void gemm_avx512(int bf16, int trans_a, int trans_b, int M, int N, int K, const float *A,
                 size_t lda, const float *B, size_t ldb, int accumulate, float *C, size_t ldc,
                 float *buf)
{
    float *apk = buf, *bpk = buf + (size_t)MC * KC, *tile = bpk + (size_t)KC * NR;
    const int kc_max = bf16 ? 2 * KC : KC;   // bf16: KC pairs in the same bytes
    if (K == 0 && !accumulate)
        for (int i = 0; i < M; i++)
            memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
    for (int pc = 0; pc < K; pc += kc_max) {
        const int kc = K - pc < kc_max ? K - pc : kc_max;
        const int acc = accumulate || pc > 0;
        for (int ic = 0; ic < M; ic += MC) {
            const int mc = M - ic < MC ? M - ic : MC;
            const float *Ab = trans_a ? A + (size_t)pc * lda + ic : A + (size_t)ic * lda + pc;
            if (bf16)
                pack_a_bf16(trans_a, Ab, lda, mc, kc, (uint32_t *)apk);
            else
                pack_a_f32(trans_a, Ab, lda, mc, kc, apk);
            for (int jc = 0; jc < N; jc += NR) {
                const int nr = N - jc < NR ? N - jc : NR;
                const float *Bb = trans_b ? B + (size_t)jc * ldb + pc : B + (size_t)pc * ldb + jc;
                float *Cb = C + (size_t)ic * ldc + jc;
                if (!bf16 && !trans_b && nr == NR && mc <= B_IN_PLACE_ROWS) {
                    tile_row(0, mc, nr, kc, apk, Bb, ldb, Cb, ldc, acc, tile);
                    continue;
                }
                if (bf16)
                    pack_b_bf16(trans_b, Bb, ldb, kc, nr, (uint32_t *)bpk);
                else
                    pack_b_f32(trans_b, Bb, ldb, kc, nr, bpk);
                tile_row(bf16, mc, nr, kc, apk, bpk, NR, Cb, ldc, acc, tile);
            }
        }
    }
}

#else /* not x86-64: OpenBLAS does every product (lib/core/blas.c) */

int gemm_avx512_available(int bf16)
{
    (void)bf16;
    return 0;
}

void gemm_avx512(int bf16, int trans_a, int trans_b, int M, int N, int K, const float *A,
                 size_t lda, const float *B, size_t ldb, int accumulate, float *C, size_t ldc,
                 float *buf)
{
    (void)bf16, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)A, (void)lda;
    (void)B, (void)ldb, (void)accumulate, (void)C, (void)ldc, (void)buf;
}

#endif
