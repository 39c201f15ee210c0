/* Native block kernels, called through ctypes: the pattern scan (below) and the quantization error sums
 * (`ss_quant_rows`, further down).
 *
 * Pattern scan, for sign-magnitude float patterns (bf16, fp16, fp8): one pass over a block of `rows` x `cols` patterns adds every pattern to a count histogram and keeps the
 * largest magnitude pattern (pattern & mask) of every row and every column. For IEEE-style formats the order
 * of (pattern & mask) is the order of |value| for non-NaN values, so these maxima are exact |w| maxima.
 *
 * The histogram uses two sub-histograms of uint32 counters, so consecutive equal patterns do not wait on
 * each other's store. A module init function exists only so that setuptools can build this as an extension.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }

/* Sum of squares of a row of bf16 patterns: the value is the pattern shifted into the top of a float, so no
 * table is needed; eight independent double lanes let the compiler vectorize. */
static double rowsq_bf16(const uint16_t *p, int64_t cols) {
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
              uint16_t mask, const float *values, double *rowsq, int bf16) {
    SCAN_BODY(uint16_t, 65536)
}

int ss_scan8(const uint8_t *x, int64_t rows, int64_t cols, int64_t *hist, uint8_t *rowmax, uint8_t *colmax,
             uint8_t mask, const float *values, double *rowsq, int bf16) {
    (void)bf16;
    bf16 = 0;
    SCAN_BODY(uint8_t, 256)
}

/* Error sums of the blockwise quantization schemes over a row-major float32 block, in one read of it.
 *
 * For every row: INT8 per channel (scale = row absmax / 127, levels -127..127); for every group of `g`
 * values of the row (g divides cols): INT4 symmetric (group absmax / 7, levels -7..7) and INT4 asymmetric
 * (scale = (max - min) / 15, zero point round(-min / scale), levels 0..15). A scale of 0 is taken as 1.
 * Each element goes through the same float32 operations as the torch reference (`kernels.quant`):
 * divide, round half to even, add zero, clamp, subtract zero, multiply; contraction into FMAs is off
 * (see setup.py) so the results are bit-identical per element. Group sums run in float32 over `g` terms
 * and are added into `out` in float64:
 * out[0] = sum x*x; then per scheme s (0 = int8_channel, 1 = int4 sym, 2 = int4 asym) at 1 + 4s:
 * sum x*q, sum q*q, sum (x-q)^2, sum |x-q|. `glo`, `ghi` are scratch of cols / g floats.
 * Values must be finite (the caller replaces NaN and Inf). */
#define RNE_MAGIC 12582912.0f /* 1.5 * 2^23: (v + M) - M rounds half to even for |v| < 2^22 */
static inline float rne(float v) { return (v + RNE_MAGIC) - RNE_MAGIC; }
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define SS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SS_CLONES
#endif

SS_CLONES
void ss_quant_rows(const float *x, int64_t rows, int64_t cols, int64_t g, double *out, float *glo, float *ghi) {
    const int64_t ng = cols / g;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * cols;
        float rowmax = 0.0f;
        for (int64_t k = 0; k < ng; k++) {
            const float *q = p + k * g;
            float lo = q[0], hi = q[0];
#pragma omp simd reduction(min : lo) reduction(max : hi)
            for (int64_t j = 1; j < g; j++) {
                lo = q[j] < lo ? q[j] : lo;
                hi = q[j] > hi ? q[j] : hi;
            }
            glo[k] = lo;
            ghi[k] = hi;
            float a = fmaxf(fabsf(lo), fabsf(hi));
            rowmax = a > rowmax ? a : rowmax;
        }
        float s8 = rowmax / 127.0f;
        if (s8 == 0.0f) s8 = 1.0f;
        for (int64_t k = 0; k < ng; k++) {
            const float *q = p + k * g;
            const float lo = glo[k], hi = ghi[k];
            float s4 = fmaxf(fabsf(lo), fabsf(hi)) / 7.0f;
            if (s4 == 0.0f) s4 = 1.0f;
            float sa = (hi - lo) / 15.0f;
            if (sa == 0.0f) sa = 1.0f;
            const float z = rne(-lo / sa);
            float xx = 0, a1 = 0, b1 = 0, c1 = 0, d1 = 0, a2 = 0, b2 = 0, c2 = 0, d2 = 0, a3 = 0, b3 = 0, c3 = 0, d3 = 0;
#pragma omp simd reduction(+ : xx, a1, b1, c1, d1, a2, b2, c2, d2, a3, b3, c3, d3)
            for (int64_t j = 0; j < g; j++) {
                const float v = q[j];
                const float q1 = clampf(rne(v / s8), -127.0f, 127.0f) * s8;
                const float q2 = clampf(rne(v / s4), -7.0f, 7.0f) * s4;
                const float q3 = (clampf(rne(v / sa) + z, 0.0f, 15.0f) - z) * sa;
                const float e1 = v - q1, e2 = v - q2, e3 = v - q3;
                xx += v * v;
                a1 += v * q1; b1 += q1 * q1; c1 += e1 * e1; d1 += fabsf(e1);
                a2 += v * q2; b2 += q2 * q2; c2 += e2 * e2; d2 += fabsf(e2);
                a3 += v * q3; b3 += q3 * q3; c3 += e3 * e3; d3 += fabsf(e3);
            }
            out[0] += xx;
            out[1] += a1; out[2] += b1; out[3] += c1; out[4] += d1;
            out[5] += a2; out[6] += b2; out[7] += c2; out[8] += d2;
            out[9] += a3; out[10] += b3; out[11] += c3; out[12] += d3;
        }
    }
}
