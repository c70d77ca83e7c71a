// AVX-512 tile transforms of Winograd F(2x2, 3x3) and F(4x4, 3x3); see
// CWinogradKernels.h. Each function mirrors its Swift twin in
// Sources/Kernels/Winograd.swift or Winograd4x4.swift line for line (columns first, then rows; the same additions in the same order), which
// is what makes the two bit-identical. No reassociation: built without fast-math.

#include "CWinogradKernels.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stddef.h>

#define AVX512 __attribute__((target("avx512f")))

// Multiplies and adds stay separate, as in Swift (no fused multiply-add).
#pragma clang fp contract(off)

int mancs_winograd_avx512_built(void) { return 1; }

// rows[i * size + j]: pixel (y0 + i, x0 + j) of image n of the H x W x c input, or
// NULL where it lies outside the image (the padding, read as 0).
static inline void patchRows(const float *input, long n, long H, long W, long c, long y0, long x0, int size,
                             const float **rows) {
    for (int i = 0; i < size; i++) {
        for (int j = 0; j < size; j++) {
            const long y = y0 + i, x = x0 + j;
            rows[i * size + j] = y >= 0 && y < H && x >= 0 && x < W ? input + ((n * H + y) * W + x) * c : NULL;
        }
    }
}

AVX512 void mancs_winograd_input_avx512(long t0, long t1, long firstRow, long H, long W, long c, long th, long tw,
                                        const float *input, float *const points[16]) {
    for (long t = t0; t < t1; t++) {
        const long n = t / (th * tw), ty = (t / tw) % th, tx = t % tw;
        const float *rows[16];
        patchRows(input, n, H, W, c, 2 * ty - 1, 2 * tx - 1, 4, rows);
        const long offset = (t - firstRow) * c;
        for (long c0 = 0; c0 < c; c0 += 16) {
            __m512 d[16], r[16];
            for (int q = 0; q < 16; q++) d[q] = rows[q] ? _mm512_loadu_ps(rows[q] + c0) : _mm512_setzero_ps();
            // r = B^T d, column by column: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
            for (int j = 0; j < 4; j++) {
                r[j] = _mm512_sub_ps(d[j], d[8 + j]);
                r[4 + j] = _mm512_add_ps(d[4 + j], d[8 + j]);
                r[8 + j] = _mm512_sub_ps(d[8 + j], d[4 + j]);
                r[12 + j] = _mm512_sub_ps(d[4 + j], d[12 + j]);
            }
            // Then each row of r times B.
            for (int i = 0; i < 4; i++) {
                const __m512 a = r[i * 4], b = r[i * 4 + 1], e = r[i * 4 + 2], f = r[i * 4 + 3];
                _mm512_storeu_ps(points[i * 4] + offset + c0, _mm512_sub_ps(a, e));
                _mm512_storeu_ps(points[i * 4 + 1] + offset + c0, _mm512_add_ps(b, e));
                _mm512_storeu_ps(points[i * 4 + 2] + offset + c0, _mm512_sub_ps(e, b));
                _mm512_storeu_ps(points[i * 4 + 3] + offset + c0, _mm512_sub_ps(b, f));
            }
        }
    }
}

AVX512 void mancs_winograd_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                         const float *const points[16], const float *bias, float *output) {
    for (long t = t0; t < t1; t++) {
        const long n = t / (th * tw), ty = (t / tw) % th, tx = t % tw;
        const long rowsValid = oh - 2 * ty < 2 ? oh - 2 * ty : 2, colsValid = ow - 2 * tx < 2 ? ow - 2 * tx : 2;
        float *out = output + ((n * oh + 2 * ty) * ow + 2 * tx) * k;
        const long offset = (t - firstRow) * k;
        for (long c0 = 0; c0 < k; c0 += 16) {
            __m512 m[16];
            for (int q = 0; q < 16; q++) m[q] = _mm512_loadu_ps(points[q] + offset + c0);
            // r = A^T M (2 x 4), column by column: A^T = [1 1 1 0; 0 1 -1 -1].
            __m512 r0[4], r1[4];
            for (int j = 0; j < 4; j++) {
                r0[j] = _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]);
                r1[j] = _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
            }
            const __m512 b = bias ? _mm512_loadu_ps(bias + c0) : _mm512_setzero_ps();
            // Then each row of r times A.
            const __m512 y00 = _mm512_add_ps(_mm512_add_ps(r0[0], r0[1]), r0[2]);
            const __m512 y01 = _mm512_sub_ps(_mm512_sub_ps(r0[1], r0[2]), r0[3]);
            _mm512_storeu_ps(out + c0, _mm512_add_ps(y00, b));
            if (colsValid == 2) _mm512_storeu_ps(out + k + c0, _mm512_add_ps(y01, b));
            if (rowsValid == 2) {
                const __m512 y10 = _mm512_add_ps(_mm512_add_ps(r1[0], r1[1]), r1[2]);
                const __m512 y11 = _mm512_sub_ps(_mm512_sub_ps(r1[1], r1[2]), r1[3]);
                _mm512_storeu_ps(out + ow * k + c0, _mm512_add_ps(y10, b));
                if (colsValid == 2) _mm512_storeu_ps(out + (ow + 1) * k + c0, _mm512_add_ps(y11, b));
            }
        }
    }
}

// -x, as Swift's prefix minus: the sign bit flipped (0 - x would turn -0 into +0).
AVX512 static inline __m512 negated(__m512 x) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
}

AVX512 void mancs_winograd_grad_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                              const float *gradOutput, float *const points[16]) {
    const __m512 zero = _mm512_setzero_ps();
    for (long t = t0; t < t1; t++) {
        const long n = t / (th * tw), ty = (t / tw) % th, tx = t % tw;
        const int rows2 = oh - 2 * ty >= 2, cols2 = ow - 2 * tx >= 2;
        const float *g = gradOutput + ((n * oh + 2 * ty) * ow + 2 * tx) * k;
        const long offset = (t - firstRow) * k;
        for (long c0 = 0; c0 < k; c0 += 16) {
            const __m512 y00 = _mm512_loadu_ps(g + c0);
            const __m512 y01 = cols2 ? _mm512_loadu_ps(g + k + c0) : zero;
            const __m512 y10 = rows2 ? _mm512_loadu_ps(g + ow * k + c0) : zero;
            const __m512 y11 = rows2 && cols2 ? _mm512_loadu_ps(g + (ow + 1) * k + c0) : zero;
            // r = A dY (4 x 2), column by column, A = [1 0; 1 1; 1 -1; 0 -1]; then each row times A^T.
            const __m512 r[4][2] = {
                {y00, y01},
                {_mm512_add_ps(y00, y10), _mm512_add_ps(y01, y11)},
                {_mm512_sub_ps(y00, y10), _mm512_sub_ps(y01, y11)},
                {negated(y10), negated(y11)},
            };
            for (int i = 0; i < 4; i++) {
                const __m512 x0 = r[i][0], x1 = r[i][1];
                _mm512_storeu_ps(points[i * 4] + offset + c0, x0);
                _mm512_storeu_ps(points[i * 4 + 1] + offset + c0, _mm512_add_ps(x0, x1));
                _mm512_storeu_ps(points[i * 4 + 2] + offset + c0, _mm512_sub_ps(x0, x1));
                _mm512_storeu_ps(points[i * 4 + 3] + offset + c0, negated(x1));
            }
        }
    }
}

// MARK: F(4x4, 3x3)

#define MUL(a, x) _mm512_mul_ps(_mm512_set1_ps(a), x)
#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps

// B^T x in place on x[0], x[s], ..., x[5s] (Winograd4x4.swift, inputTransform6).
AVX512 static inline void inputTransform6(__m512 *x, int s) {
    const __m512 x0 = x[0], x1 = x[s], x2 = x[2 * s], x3 = x[3 * s], x4 = x[4 * s], x5 = x[5 * s];
    const __m512 t1 = SUB(x4, MUL(4, x2)), t2 = SUB(x3, MUL(4, x1)), t3 = SUB(x4, x2), t4 = MUL(2, SUB(x3, x1));
    x[0] = SUB(ADD(x4, MUL(4, x0)), MUL(5, x2));
    x[s] = ADD(t1, t2);
    x[2 * s] = SUB(t1, t2);
    x[3 * s] = ADD(t3, t4);
    x[4 * s] = SUB(t3, t4);
    x[5 * s] = SUB(ADD(x5, MUL(4, x1)), MUL(5, x3));
}

// A^T x: six values to four (outputTransform6).
AVX512 static inline void outputTransform6(const __m512 *x, int s, __m512 *y, int t) {
    const __m512 s12 = ADD(x[s], x[2 * s]), d12 = SUB(x[s], x[2 * s]);
    const __m512 s34 = ADD(x[3 * s], x[4 * s]), d34 = SUB(x[3 * s], x[4 * s]);
    y[0] = ADD(ADD(x[0], s12), s34);
    y[t] = ADD(d12, MUL(2, d34));
    y[2 * t] = ADD(s12, MUL(4, s34));
    y[3 * t] = ADD(ADD(d12, MUL(8, d34)), x[5 * s]);
}

// A y: four values to six (gradOutputTransform6).
AVX512 static inline void gradOutputTransform6(const __m512 *y, int s, __m512 *x, int t) {
    const __m512 y0 = y[0], y1 = y[s], y2 = y[2 * s], y3 = y[3 * s];
    const __m512 e = ADD(y0, y2), o = ADD(y1, y3), e2 = ADD(y0, MUL(4, y2)), o2 = ADD(MUL(2, y1), MUL(8, y3));
    x[0] = y0;
    x[t] = ADD(e, o);
    x[2 * t] = SUB(e, o);
    x[3 * t] = ADD(e2, o2);
    x[4 * t] = SUB(e2, o2);
    x[5 * t] = y3;
}

AVX512 void mancs_winograd4_input_avx512(long t0, long t1, long firstRow, long H, long W, long c, long th, long tw,
                                         const float *input, float *const points[36]) {
    for (long t = t0; t < t1; t++) {
        const long n = t / (th * tw), ty = (t / tw) % th, tx = t % tw;
        const float *rows[36];
        patchRows(input, n, H, W, c, 4 * ty - 1, 4 * tx - 1, 6, rows);
        const long offset = (t - firstRow) * c;
        for (long c0 = 0; c0 < c; c0 += 16) {
            __m512 d[36];
            for (int q = 0; q < 36; q++) d[q] = rows[q] ? _mm512_loadu_ps(rows[q] + c0) : _mm512_setzero_ps();
            for (int j = 0; j < 6; j++) inputTransform6(d + j, 6);
            for (int i = 0; i < 6; i++) inputTransform6(d + i * 6, 1);
            for (int q = 0; q < 36; q++) _mm512_storeu_ps(points[q] + offset + c0, d[q]);
        }
    }
}

AVX512 void mancs_winograd4_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                          const float *const points[36], const float *bias, float *output) {
    for (long t = t0; t < t1; t++) {
        const long n = t / (th * tw), ty = (t / tw) % th, tx = t % tw;
        const long rowsValid = oh - 4 * ty < 4 ? oh - 4 * ty : 4, colsValid = ow - 4 * tx < 4 ? ow - 4 * tx : 4;
        float *out = output + ((n * oh + 4 * ty) * ow + 4 * tx) * k;
        const long offset = (t - firstRow) * k;
        for (long c0 = 0; c0 < k; c0 += 16) {
            __m512 m[36], r[24], y[16];
            for (int q = 0; q < 36; q++) m[q] = _mm512_loadu_ps(points[q] + offset + c0);
            for (int j = 0; j < 6; j++) outputTransform6(m + j, 6, r + j, 6);
            for (int i = 0; i < 4; i++) outputTransform6(r + i * 6, 1, y + i * 4, 1);
            const __m512 b = bias ? _mm512_loadu_ps(bias + c0) : _mm512_setzero_ps();
            for (long i = 0; i < rowsValid; i++)
                for (long j = 0; j < colsValid; j++) _mm512_storeu_ps(out + (i * ow + j) * k + c0, ADD(y[i * 4 + j], b));
        }
    }
}

AVX512 void mancs_winograd4_grad_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                               const float *gradOutput, float *const points[36]) {
    for (long t = t0; t < t1; t++) {
        const long n = t / (th * tw), ty = (t / tw) % th, tx = t % tw;
        const long rowsValid = oh - 4 * ty < 4 ? oh - 4 * ty : 4, colsValid = ow - 4 * tx < 4 ? ow - 4 * tx : 4;
        const float *g = gradOutput + ((n * oh + 4 * ty) * ow + 4 * tx) * k;
        const long offset = (t - firstRow) * k;
        for (long c0 = 0; c0 < k; c0 += 16) {
            __m512 y[16], r[24], d[36];
            for (long i = 0; i < 4; i++)
                for (long j = 0; j < 4; j++)
                    y[i * 4 + j] = i < rowsValid && j < colsValid ? _mm512_loadu_ps(g + (i * ow + j) * k + c0) : _mm512_setzero_ps();
            for (int j = 0; j < 4; j++) gradOutputTransform6(y + j, 4, r + j, 4);
            for (int i = 0; i < 6; i++) gradOutputTransform6(r + i * 4, 1, d + i * 6, 1);
            for (int q = 0; q < 36; q++) _mm512_storeu_ps(points[q] + offset + c0, d[q]);
        }
    }
}

#else  // not x86-64: no kernels; Kernels/Winograd.swift never calls them.

#include <stdlib.h>

int mancs_winograd_avx512_built(void) { return 0; }
void mancs_winograd_input_avx512(long t0, long t1, long firstRow, long H, long W, long c, long th, long tw,
                                 const float *input, float *const points[16]) { abort(); }
void mancs_winograd_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                  const float *const points[16], const float *bias, float *output) { abort(); }
void mancs_winograd_grad_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                       const float *gradOutput, float *const points[16]) { abort(); }
void mancs_winograd4_input_avx512(long t0, long t1, long firstRow, long H, long W, long c, long th, long tw,
                                  const float *input, float *const points[36]) { abort(); }
void mancs_winograd4_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                   const float *const points[36], const float *bias, float *output) { abort(); }
void mancs_winograd4_grad_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                        const float *gradOutput, float *const points[36]) { abort(); }

#endif
