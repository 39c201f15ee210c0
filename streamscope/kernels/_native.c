/* Native block kernels, called through ctypes: the pattern scan (below), the light bf16 statistics
 * (`ss_light_bf16`), the float32 statistics (`ss_stats32`) and the quantization error sums (`ss_quant_rows`,
 * further down).
 *
 * Pattern scan, for sign-magnitude float patterns (bf16, fp16, fp8): one pass over a block of `rows` x `cols`
 * patterns adds every pattern to a count histogram and keeps the largest magnitude pattern (pattern & mask) of
 * every row and every column. For IEEE-style formats the order of (pattern & mask) is the order of |value| for
 * non-NaN values, so these maxima are exact |w| maxima. Optionally it also writes the block's float32 values
 * (`vals`), row by row while the row is in cache: cheaper than a second conversion pass over the block.
 *
 * The histogram uses two sub-histograms of uint32 counters, so consecutive equal patterns do not wait on
 * each other's store. A module init function exists only so that setuptools can build this as an extension.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
/* Per-CPU clones of the float kernels: x86-64-v3 and v4 include FMA and wider vectors (-mavx512f alone does
 * not give FMA); the default clone calls libm's fmaf */
#define SS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SS_CLONES
#endif
/* Helpers of the cloned kernels are inlined into each clone: called, they would run as the default ISA. */
#if defined(__GNUC__)
#define SS_INLINE static inline __attribute__((always_inline))
#else
#define SS_INLINE static inline
#endif

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
/* Raised whenever a kernel's meaning changes (2: INT4 groups with a shorter last group), so that `native.py`
 * refuses a library built from older source instead of computing other sums with it. */
int ss_abi_version(void) { return 2; }

/* Sum of squares of a row of bf16 patterns: the value is the pattern shifted into the top of a float, so no
 * table is needed; eight independent double lanes let the compiler vectorize. */
SS_INLINE double rowsq_bf16(const uint16_t *p, int64_t cols) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 7 < cols; j += 8) {
        for (int l = 0; l < 8; l++) {
            uint32_t bits = (uint32_t)p[j + l] << 16;
            float v;
            memcpy(&v, &bits, sizeof v);
            acc[l] += (double)v * (double)v;
        }
    }
    for (; j < cols; j++) {
        uint32_t bits = (uint32_t)p[j] << 16;
        float v;
        memcpy(&v, &bits, sizeof v);
        acc[0] += (double)v * (double)v;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* A row's float32 values: bf16 by a shift, other kinds from the pattern's value table. */
SS_INLINE void write_values16(const uint16_t *p, int64_t cols, const float *values, int bf16, float *o) {
    if (bf16) {
        uint32_t *u = (uint32_t *)o;
        for (int64_t j = 0; j < cols; j++) u[j] = (uint32_t)p[j] << 16;
    } else {
        for (int64_t j = 0; j < cols; j++) o[j] = values[p[j]];
    }
}

static void write_values8(const uint8_t *p, int64_t cols, const float *values, int bf16, float *o) {
    (void)bf16;
    for (int64_t j = 0; j < cols; j++) o[j] = values[p[j]];
}

#define SCAN_BODY(T, NKEYS)                                                                    \
    uint32_t *h = (uint32_t *)calloc(2 * (NKEYS), sizeof(uint32_t));                           \
    if (!h) return -1;                                                                          \
    uint32_t *h0 = h, *h1 = h + (NKEYS);                                                        \
    for (int64_t r = 0; r < rows; r++) {                                                        \
        const T *p = x + r * cols;                                                              \
        int64_t j = 0;                                                                          \
        for (; j + 1 < cols; j += 2) {                                                          \
            h0[p[j]]++;                                                                         \
            h1[p[j + 1]]++;                                                                     \
        }                                                                                       \
        if (j < cols) h0[p[j]]++;                                                               \
        if (vals) write_values(p, cols, values, bf16, vals + r * cols);                         \
        if (rowsq && bf16) {                                                                    \
            rowsq[r] = rowsq_bf16((const uint16_t *)p, cols);                                   \
        } else if (rowsq) {                                                                     \
            double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                      \
            for (j = 0; j + 3 < cols; j += 4) {                                                 \
                double v0 = values[p[j]], v1 = values[p[j + 1]];                                \
                double v2 = values[p[j + 2]], v3 = values[p[j + 3]];                            \
                s0 += v0 * v0; s1 += v1 * v1; s2 += v2 * v2; s3 += v3 * v3;                     \
            }                                                                                   \
            for (; j < cols; j++) { double v = values[p[j]]; s0 += v * v; }                     \
            rowsq[r] = (s0 + s1) + (s2 + s3);                                                   \
        }                                                                                       \
        if (rowmax || colmax) {                                                                 \
            T m = 0;                                                                            \
            for (j = 0; j < cols; j++) {                                                        \
                T a = p[j] & mask;                                                              \
                m = a > m ? a : m;                                                              \
                if (colmax) colmax[j] = a > colmax[j] ? a : colmax[j];                          \
            }                                                                                   \
            if (rowmax) rowmax[r] = m;                                                          \
        }                                                                                       \
    }                                                                                           \
    for (int64_t k = 0; k < (NKEYS); k++) hist[k] += (int64_t)h0[k] + (int64_t)h1[k];           \
    free(h);                                                                                    \
    return 0;

/* Returns 0, or -1 when memory for the counters could not be had. Blocks must hold < 2^32 elements. */
int ss_scan16(const uint16_t *x, int64_t rows, int64_t cols, int64_t *hist, uint16_t *rowmax, uint16_t *colmax,
              uint16_t mask, const float *values, double *rowsq, int bf16, float *vals) {
#define write_values write_values16
    SCAN_BODY(uint16_t, 65536)
#undef write_values
}

int ss_scan8(const uint8_t *x, int64_t rows, int64_t cols, int64_t *hist, uint8_t *rowmax, uint8_t *colmax,
             uint8_t mask, const float *values, double *rowsq, int bf16, float *vals) {
    (void)bf16;
    bf16 = 0;
#define write_values write_values8
    SCAN_BODY(uint8_t, 256)
#undef write_values
}

/* The light statistics of bf16 patterns, for scans whose analyses read no histogram: per row, the sum of squares
 * (`rowsq`, optional, as ss_scan16 writes it), and into out (double[3], added to) the sum of squares of the
 * finite values and the counts of NaN and Inf. A row is checked for NaN/Inf by its largest magnitude pattern
 * first, so the finite-only sum runs only on rows that hold them. */
SS_CLONES
void ss_light_bf16(const uint16_t *x, int64_t rows, int64_t cols, double *rowsq, double *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *p = x + r * cols;
        uint16_t top = 0;
        for (int64_t j = 0; j < cols; j++) {
            uint16_t a = p[j] & 0x7FFF;
            top = a > top ? a : top;
        }
        double s = rowsq_bf16(p, cols);
        if (rowsq) rowsq[r] = s;
        if (top >= 0x7F80) { /* exponent all ones: Inf (0x7F80) or NaN (above) */
            double finite = 0.0;
            for (int64_t j = 0; j < cols; j++) {
                uint16_t a = p[j] & 0x7FFF;
                if (a > 0x7F80) {
                    out[1] += 1;
                } else if (a == 0x7F80) {
                    out[2] += 1;
                } else {
                    uint32_t bits = (uint32_t)p[j] << 16;
                    float v;
                    memcpy(&v, &bits, sizeof v);
                    finite += (double)v * (double)v;
                }
            }
            s = finite;
        }
        out[0] += s;
    }
}

/* Statistics of a float32 block of `rows` x `cols` values in one read of it (the numpy/torch path makes about
 * ten passes): the truncated pattern histogram (each value's top 16 bits, what the torch path keys on);
 * counts of finite, NaN and Inf values, of zeros and of |v| below the three sparsity thresholds `t`;
 * float64 sums of |v| and of the finite values; min and max of the finite values; and the centred sum of
 * squares M2, each row's about its own mean by a second pass over the row while it is in cache, rows combined
 * by Chan's pairwise update. Optional: per-row |v| maxima, per-column maxima (raised, NaN sticky as in
 * torch's amax), per-row sums of squares (NaN or Inf where the row holds them). Sums run in 16 independent
 * lanes so the compiler vectorizes them. out (double[12]): n_finite, nan, inf, zeros, below t0, t1, t2,
 * sum |v|, mean, M2, min, max. Returns 0, or -1 when memory for the counters could not be had. Blocks must
 * hold < 2^32 values. */
#define SL 16
/* One value (its bits `B`) into lane l. Non-finite values are masked to 0 by their bits, not by a branch or a
 * float select, so that GCC vectorizes the lanes. */
#define STATS32_ELEMENT(l, B)                                                                      \
    {                                                                                              \
        uint32_t bits = (B), abits = bits & 0x7fffffffu;                                           \
        int fin = abits < 0x7f800000u, nan = abits > 0x7f800000u;                                  \
        uint32_t keep = 0u - (uint32_t)fin, fbits = bits & keep, fabits = abits & keep;            \
        float v, a, fv, fa;                                                                        \
        memcpy(&v, &bits, 4); memcpy(&a, &abits, 4); memcpy(&fv, &fbits, 4); memcpy(&fa, &fabits, 4); \
        s[l] += fv; sa[l] += fa; sq[l] += (double)v * (double)v;                                   \
        nf[l] += fin; nn[l] += nan; nz[l] += abits == 0;                                           \
        b0[l] += a < t0; b1[l] += a < t1; b2[l] += a < t2;                                         \
        mn[l] = fin & (v < mn[l]) ? v : mn[l];                                                     \
        mx[l] = fin & (v > mx[l]) ? v : mx[l];                                                     \
        rm[l] = (a > rm[l]) | nan ? a : rm[l];                                                     \
    }
/* Its deviation from the row mean into lane l: 0 for non-finite values (masked by bits, as above). */
#define STATS32_CENTRED(l, B)                                                                      \
    {                                                                                              \
        uint32_t bits = (B), fin = (bits & 0x7fffffffu) < 0x7f800000u, fbits = bits & (0u - fin);  \
        float fv;                                                                                  \
        memcpy(&fv, &fbits, 4);                                                                    \
        double d = ((double)fv - mean) * (double)fin;                                              \
        d1[l] += d; d2[l] += d * d;                                                                \
    }
SS_CLONES
int ss_stats32(const float *x, int64_t rows, int64_t cols, int64_t *hist, const float *t, float *rowmax,
               float *colmax, double *rowsq, double *out) {
    uint32_t *h = (uint32_t *)calloc(2 * 65536, sizeof(uint32_t));
    if (!h) return -1;
    uint32_t *h0 = h, *h1 = h + 65536;
    const float t0 = t[0], t1 = t[1], t2 = t[2];
    double n_all = 0, mean_all = 0, m2_all = 0, sum_abs = 0, c_nan = 0, c_zero = 0, c_b0 = 0, c_b1 = 0, c_b2 = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * cols;
        const uint32_t *u = (const uint32_t *)p;
        int64_t j = 0;
        for (; j + 1 < cols; j += 2) {
            h0[u[j] >> 16]++;
            h1[u[j + 1] >> 16]++;
        }
        if (j < cols) h0[u[j] >> 16]++;
        double s[SL] = {0}, sa[SL] = {0}, sq[SL] = {0};
        int32_t nf[SL] = {0}, nn[SL] = {0}, nz[SL] = {0}, b0[SL] = {0}, b1[SL] = {0}, b2[SL] = {0};
        float mn[SL], mx[SL], rm[SL];
        for (int l = 0; l < SL; l++) { mn[l] = INFINITY; mx[l] = -INFINITY; rm[l] = 0.0f; }
        int64_t body = cols - cols % SL;
        for (j = 0; j < body; j += SL) {
            for (int l = 0; l < SL; l++) STATS32_ELEMENT(l, u[j + l])
        }
        for (; j < cols; j++) STATS32_ELEMENT(j - body, u[j])
        if (colmax) {
            for (j = 0; j < cols; j++) {
                float a = fabsf(p[j]), c = colmax[j];
                colmax[j] = (a > c) | (a != a) ? a : c;
            }
        }
        double rs = 0, ra = 0, rq = 0;
        int64_t rn = 0;
        float rmax = 0.0f;
        for (int l = 0; l < SL; l++) {
            rs += s[l]; ra += sa[l]; rq += sq[l]; rn += nf[l];
            c_nan += nn[l]; c_zero += nz[l]; c_b0 += b0[l]; c_b1 += b1[l]; c_b2 += b2[l];
            lo = mn[l] < lo ? mn[l] : lo;
            hi = mx[l] > hi ? mx[l] : hi;
            rmax = (rm[l] > rmax) | (rm[l] != rm[l]) ? rm[l] : rmax;
        }
        sum_abs += ra;
        if (rowmax) rowmax[r] = rmax;
        if (rowsq) rowsq[r] = rq;
        if (!rn) continue;
        /* the row's M2 about its mean, with the rounding of the mean corrected (compensated two-pass) */
        double mean = rs / (double)rn, d2[SL] = {0}, d1[SL] = {0};
        for (j = 0; j < body; j += SL) {
            for (int l = 0; l < SL; l++) STATS32_CENTRED(l, u[j + l])
        }
        for (; j < cols; j++) STATS32_CENTRED(j - body, u[j])
        double c1 = 0, m2 = 0;
        for (int l = 0; l < SL; l++) { c1 += d1[l]; m2 += d2[l]; }
        m2 -= c1 * c1 / (double)rn;
        mean += c1 / (double)rn;
        double total = n_all + (double)rn, delta = mean - mean_all;
        mean_all += delta * (double)rn / total;
        m2_all += m2 + delta * delta * n_all * (double)rn / total;
        n_all = total;
    }
    for (int64_t k = 0; k < 65536; k++) hist[k] += (int64_t)h0[k] + (int64_t)h1[k];
    free(h);
    double n_vals = (double)rows * (double)cols;
    out[0] = n_all; out[1] = c_nan; out[2] = n_vals - n_all - c_nan; out[3] = c_zero;
    out[4] = c_b0; out[5] = c_b1; out[6] = c_b2; out[7] = sum_abs; out[8] = mean_all; out[9] = m2_all;
    out[10] = lo; out[11] = hi;
    return 0;
}

/* Error sums of the blockwise quantization schemes over a row-major block, in one read of it.
 *
 * For every row: INT8 per channel (scale = row absmax / 127, levels -127..127); for every group of `g`
 * consecutive values of the row, the last group holding the cols % g values left where g does not divide cols
 * (as GGUF and GPTQ-style packers group a row): INT4 symmetric (group absmax / 7, levels -7..7) and INT4
 * asymmetric (scale = (max - min) / 15, zero point round(-min / scale), levels 0..15). A scale of 0 is taken
 * as 1.
 * Each element goes through the same float32 operations as the torch reference (`kernels.quant`):
 * divide, round half to even, add zero, clamp, subtract zero, multiply; contraction into FMAs is off
 * (see setup.py) so the results are bit-identical per element.
 *
 * The divisions are the kernel's most expensive step, so where every scale of a group lies in [2^-90, 2^90]
 * each quotient is formed from the reciprocal instead: q0 = v * (1/s), then one Newton step with exact
 * residual, q = fma(v - q0 * s, 1/s, q0), which is the correctly rounded quotient (Markstein's theorem;
 * checked here against true division on 6e8 random and near-tie float32 and bfloat16 pairs: identical
 * levels, identical quotients wherever they are 0.25 or more). Outside that range the group divides.
 *
 * Sums run in float32 in 16 lanes across a row's groups (no horizontal reduction per group: 25 % faster
 * here) and are added into `out` in float64 once per row: out[0] = sum x*x; then per scheme s
 * (0 = int8_channel, 1 = int4 sym, 2 = int4 asym) at 1 + 4s: sum x*q, sum q*q, sum (x-q)^2, sum |x-q|.
 * `glo`, `ghi` are scratch of ceil(cols / g) floats. Values must be finite (the caller checks out[0]). A variant
 * reading bfloat16 patterns directly was slower than this one plus torch's conversion (0.056 s vs 0.052 s
 * for 4096 x 11008 on one thread here). */
#define RNE_MAGIC 12582912.0f /* 1.5 * 2^23: (v + M) - M rounds half to even for |v| < 2^22 */
#define LANES 16
static inline float rne(float v) { return (v + RNE_MAGIC) - RNE_MAGIC; }
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
/* v / s, correctly rounded, from r = 1 / s (see above). */
static inline float quotient(float v, float s, float r) {
    const float q0 = v * r;
    return fmaf(fmaf(-q0, s, v), r, q0);
}
static inline int reciprocal_ok(float s) { return s >= 0x1p-90f && s <= 0x1p90f; }

/* One element with its rounded levels m1..m3 (before the zero point and the clamp) into lane l of acc.
 * CLAMP (CLAMP_SYM or NO_CLAMP) bounds the symmetric levels. Where every scale is a normal float (the
 * reciprocal path) they cannot leave their range: |v| <= absmax, so |v / s| <= 127 (or 7) times (1 + 2^-23)
 * before rounding, and the clamp is skipped (the kernel ran 10-14 % faster here). A subnormal scale carries
 * too few bits for that bound, so the dividing path clamps. */
#define CLAMP_SYM(M, B) clampf((M), -(B), (B))
#define NO_CLAMP(M, B) (M)
#define QUANT_ELEMENT_WITH(CLAMP, VALUE, M1, M2, M3, l)                                                     \
    {                                                                                                       \
        const float v = (VALUE);                                                                            \
        const float q1 = CLAMP((M1), 127.0f) * s8;                                                          \
        const float q2 = CLAMP((M2), 7.0f) * s4;                                                            \
        const float q3 = (clampf((M3) + z, 0.0f, 15.0f) - z) * sa;                                          \
        const float e1 = v - q1, e2 = v - q2, e3 = v - q3;                                                  \
        acc[0][l] += v * v;                                                                                 \
        acc[1][l] += v * q1; acc[2][l] += q1 * q1; acc[3][l] += e1 * e1; acc[4][l] += fabsf(e1);            \
        acc[5][l] += v * q2; acc[6][l] += q2 * q2; acc[7][l] += e2 * e2; acc[8][l] += fabsf(e2);            \
        acc[9][l] += v * q3; acc[10][l] += q3 * q3; acc[11][l] += e3 * e3; acc[12][l] += fabsf(e3);         \
    }
#define QUANT_ELEMENT(...) QUANT_ELEMENT_WITH(CLAMP_SYM, __VA_ARGS__)

/* Values in group k of a row of `cols` (the last group may be shorter). */
static inline int64_t group_len(int64_t k, int64_t g, int64_t cols) { return cols - k * g < g ? cols - k * g : g; }

/* Group and row extremes of one row: glo/ghi per group, returns the row's absmax. */
SS_INLINE float row_extremes(const float *p, int64_t cols, int64_t ng, int64_t g, float *glo, float *ghi) {
    float rowmax = 0.0f;
    for (int64_t k = 0; k < ng; k++) {
        const float *q = p + k * g;
        const int64_t len = group_len(k, g, cols);
        float lo = q[0], hi = lo;
#pragma omp simd reduction(min : lo) reduction(max : hi)
        for (int64_t j = 1; j < len; j++) {
            lo = q[j] < lo ? q[j] : lo;
            hi = q[j] > hi ? q[j] : hi;
        }
        glo[k] = lo;
        ghi[k] = hi;
        const float a = fmaxf(fabsf(lo), fabsf(hi));
        rowmax = a > rowmax ? a : rowmax;
    }
    return rowmax;
}

/* The error sums of one row of float32 values into out[13]. */
SS_INLINE void quant_row(const float *p, int64_t cols, int64_t g, double *out, float *glo, float *ghi) {
    const int64_t ng = (cols + g - 1) / g;
    float s8 = row_extremes(p, cols, ng, g, glo, ghi) / 127.0f;
    if (s8 == 0.0f) s8 = 1.0f;
    float acc[13][LANES];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < ng; k++) {
        const float *q = p + k * g;
        const int64_t len = group_len(k, g, cols);
        const float lo = glo[k], hi = ghi[k];
        float s4 = fmaxf(fabsf(lo), fabsf(hi)) / 7.0f;
        if (s4 == 0.0f) s4 = 1.0f;
        float sa = (hi - lo) / 15.0f;
        if (sa == 0.0f) sa = 1.0f;
        const float z = rne(-lo / sa);
        int64_t j0 = 0;
        if (reciprocal_ok(s8) && reciprocal_ok(s4) && reciprocal_ok(sa)) {
            const float r8 = 1.0f / s8, r4 = 1.0f / s4, ra = 1.0f / sa;
            for (; j0 + LANES <= len; j0 += LANES) {
                const float *c = q + j0;
#pragma omp simd
                for (int l = 0; l < LANES; l++)
                    QUANT_ELEMENT_WITH(NO_CLAMP, c[l], rne(quotient(c[l], s8, r8)), rne(quotient(c[l], s4, r4)), rne(quotient(c[l], sa, ra)), l)
            }
        } else {
            for (; j0 + LANES <= len; j0 += LANES) {
                const float *c = q + j0;
#pragma omp simd
                for (int l = 0; l < LANES; l++)
                    QUANT_ELEMENT(c[l], rne(c[l] / s8), rne(c[l] / s4), rne(c[l] / sa), l)
            }
        }
        for (int64_t j = j0; j < len; j++) /* a group length that is not a multiple of the lanes */
            QUANT_ELEMENT(q[j], rne(q[j] / s8), rne(q[j] / s4), rne(q[j] / sa), 0)
    }
    for (int sidx = 0; sidx < 13; sidx++) {
        double t = 0.0;
        for (int l = 0; l < LANES; l++) t += acc[sidx][l];
        out[sidx] += t;
    }
}

SS_CLONES
void ss_quant_rows(const float *x, int64_t rows, int64_t cols, int64_t g, double *out, float *glo, float *ghi) {
    for (int64_t r = 0; r < rows; r++) quant_row(x + r * cols, cols, g, out, glo, ghi);
}

/* The same from bfloat16 patterns: each row is widened into `row` (cols floats, in cache) and quantized there,
 * so the block is read once at two bytes a value instead of being written and read again as float32. */
SS_CLONES
void ss_quant_rows_bf16(const uint16_t *x, int64_t rows, int64_t cols, int64_t g, double *out, float *glo, float *ghi,
                        float *row) {
    for (int64_t r = 0; r < rows; r++) {
        write_values16(x + r * cols, cols, NULL, 1, row);
        quant_row(row, cols, g, out, glo, ghi);
    }
}

/* Activation statistics of a float32 block of `rows` tokens x `cols` channels, in one read of it (the
 * activation probes' magnitude, act scales and importance matrix of one module call).
 *
 * Adds the top-16-bit pattern of every |x| to `hist` (32768 counters: the sign bit is cleared); per row, its
 * largest |x| into `rowmax`; per column, raises `colmax` to the largest |x| and adds the sum of x^2 (in double)
 * to `colsq`; any of the three may be NULL. `out`: the sum of |x| over finite values, the smallest |x| (NaN
 * ignored), the count of finite values. NaN wins a row or column maximum, as torch's amax does. */
/* One value into lane l of ss_act32's row sums: |x| (finite values only), the count of finite values, the
 * smallest |x| and the largest (NaN wins it, as in torch's amax). */
#define ACT32_ELEMENT(l, B)                                                                        \
    {                                                                                              \
        uint32_t abits = (B) & 0x7fffffffu, fin = abits < 0x7f800000u, nan = abits > 0x7f800000u;  \
        uint32_t fab = abits & (0u - fin);                                                         \
        float a, fa;                                                                               \
        memcpy(&a, &abits, 4); memcpy(&fa, &fab, 4);                                               \
        sa[l] += fa; nf[l] += fin;                                                                 \
        mn[l] = (a < mn[l]) ? a : mn[l];                                                           \
        rm[l] = (a > rm[l]) | nan ? a : rm[l];                                                     \
    }
SS_CLONES
int ss_act32(const float *x, int64_t rows, int64_t cols, int64_t *hist, float *rowmax, float *colmax, double *colsq,
             double *out) {
    uint32_t *h = hist ? (uint32_t *)calloc(2 * 32768, sizeof(uint32_t)) : NULL;
    if (hist && !h) return -1;
    double sum_abs = 0, n_fin = 0;
    float lo = INFINITY;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * cols;
        const uint32_t *u = (const uint32_t *)p;
        if (h) {
            int64_t j = 0;
            for (; j + 1 < cols; j += 2) {
                h[(u[j] & 0x7fffffffu) >> 16]++;
                h[32768 + ((u[j + 1] & 0x7fffffffu) >> 16)]++;
            }
            if (j < cols) h[(u[j] & 0x7fffffffu) >> 16]++;
        }
        double sa[SL] = {0};
        int32_t nf[SL] = {0};
        float mn[SL], rm[SL];
        for (int l = 0; l < SL; l++) { mn[l] = INFINITY; rm[l] = 0.0f; }
        int64_t body = cols - cols % SL, j = 0;
        for (; j < body; j += SL) {
            for (int l = 0; l < SL; l++) ACT32_ELEMENT(l, u[j + l])
        }
        for (; j < cols; j++) ACT32_ELEMENT(j - body, u[j])
        float rmax = 0.0f;
        for (int l = 0; l < SL; l++) {
            sum_abs += sa[l]; n_fin += nf[l];
            lo = mn[l] < lo ? mn[l] : lo;
            rmax = (rm[l] > rmax) | (rm[l] != rm[l]) ? rm[l] : rmax;
        }
        if (rowmax) rowmax[r] = rmax;
        if (colmax) {
            for (j = 0; j < cols; j++) {
                float a = fabsf(p[j]), c = colmax[j];
                colmax[j] = (a > c) | (a != a) ? a : c;
            }
        }
        if (colsq) {
            for (j = 0; j < cols; j++) colsq[j] += (double)p[j] * (double)p[j];
        }
    }
    if (h) {
        for (int64_t k = 0; k < 32768; k++) hist[k] += (int64_t)h[k] + (int64_t)h[32768 + k];
        free(h);
    }
    out[0] = sum_abs; out[1] = lo; out[2] = n_fin;
    return 0;
}
