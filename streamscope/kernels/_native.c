/* Fused block kernel for sign-magnitude float patterns (bf16, fp16, fp8), called through ctypes.
 *
 * One pass over a block of `rows` x `cols` patterns adds every pattern to a count histogram and keeps the
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
