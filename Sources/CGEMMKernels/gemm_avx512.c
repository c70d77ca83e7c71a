// AVX-512 SGEMM for C = alpha * A * op(B) + beta * C (see CGEMMKernels.h).
//
// Layout (GotoBLAS-style, with A left in place): op(B) is copied, one
// KC x NC block at a time, into 64-column panels [p][64] that stay in L1/L2;
// A is read in place, six rows at a time, each value broadcast from memory into
// the FMA. A micro-tile of 6 rows x 64 columns of C lives in 24 ZMM registers for
// a whole KC block. Not packing A is the point: for the network's thin GEMMs
// (e.g. 65536 x 64 x 256) packing the big operand is what OpenBLAS spends its
// time on.

#include "CGEMMKernels.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MR 6      // rows of a micro-tile
#define NR 64     // columns of a panel (4 ZMM)
#define KC 256    // reduction block: a 256 x 64 panel is 64 KiB
#define NC 1024   // columns packed at once: a block is at most 1 MiB
#define MC 96     // rows of A swept per panel while it is hot in cache

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define INLINE __attribute__((always_inline)) static inline

int mancs_gemm_avx512_built(void) { return 1; }

// C[R x 16V] = alpha * sum_p A(r,p) * panel[p][16V] + cScale * C; cScale 0 never reads C.
AVX512 INLINE void microTile(const int R, const int V, long kc, const float *a, long lda,
                             const float *panel, float *c, long ldc, float alpha, float cScale) {
    __m512 acc[MR][4];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
    for (long p = 0; p < kc; p++) {
        // The next tile's rows (past the last row: a prefetch never faults), one cache
        // line per row every 16 steps: where A is read
        // once (one panel, e.g. 65536 x 64 x 256) this overlaps the memory stream
        // with the FMAs (90 -> 126-138 GFLOP/s per thread, two threads running).
        if ((p & 15) == 0) {
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(a + (r + MR) * lda + p), _MM_HINT_T0);
        }
        __m512 bv[4];
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) bv[v] = _mm512_load_ps(panel + p * 16 * V + 16 * v);
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            const __m512 ar = _mm512_set1_ps(a[r * lda + p]);
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
        }
    }
    const __m512 al = _mm512_set1_ps(alpha), cs = _mm512_set1_ps(cScale);
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < V; v++) {
            float *cp = c + r * ldc + 16 * v;
            __m512 out = _mm512_mul_ps(al, acc[r][v]);
            if (cScale != 0) out = _mm512_fmadd_ps(cs, _mm512_loadu_ps(cp), out);
            _mm512_storeu_ps(cp, out);
        }
}

#define TILE(R, V) microTile(R, V, kc, a, lda, panel, c, ldc, alpha, cScale); return
#define ROWS(V)                                                                                                  \
    switch (rows) {                                                                                              \
    case 6: TILE(6, V); case 5: TILE(5, V); case 4: TILE(4, V);                                                  \
    case 3: TILE(3, V); case 2: TILE(2, V); default: TILE(1, V);                                                 \
    }

// One micro-tile of `rows` (1-6) x 16 * `vectors` (1-4) columns.
AVX512 static void tile(int rows, int vectors, long kc, const float *a, long lda, const float *panel, float *c,
                        long ldc, float alpha, float cScale) {
    switch (vectors) {
    case 4: ROWS(4);
    case 3: ROWS(3);
    case 2: ROWS(2);
    default: ROWS(1);
    }
}

// Copies rows p0..p0+kc, columns j0..j0+nc of op(B) into panels of NR columns:
// panel q (width w, the last one possibly narrower) at dst + q*NR*kc, as [p][w].
static void packB(int transB, const float *b, long ldb, long p0, long kc, long j0, long nc, float *dst) {
    for (long jp = 0; jp < nc; jp += NR) {
        const long w = nc - jp < NR ? nc - jp : NR;
        float *d = dst + jp * kc;
        if (!transB) {
            for (long p = 0; p < kc; p++) memcpy(d + p * w, b + (p0 + p) * ldb + j0 + jp, (size_t)w * sizeof(float));
        } else {
            for (long jj = 0; jj < w; jj++) {
                const float *s = b + (j0 + jp + jj) * ldb + p0;
                for (long p = 0; p < kc; p++) d[p * w + jj] = s[p];
            }
        }
    }
}

// One packing buffer per thread (KC x NC floats, 1 MiB), kept for the thread's life
// and freed when it exits (the compute pool's threads come and go with --threads).
static pthread_key_t packKey;
static pthread_once_t packKeyOnce = PTHREAD_ONCE_INIT;
static void makePackKey(void) { pthread_key_create(&packKey, free); }

static float *threadPackBuffer(void) {
    pthread_once(&packKeyOnce, makePackKey);
    float *buffer = pthread_getspecific(packKey);
    if (!buffer) {
        if (posix_memalign((void **)&buffer, 64, sizeof(float) * KC * NC) != 0) {
            fputs("mancs: out of memory for the GEMM kernel's 1 MiB packing buffer\n", stderr);
            abort();
        }
        pthread_setspecific(packKey, buffer);
    }
    return buffer;
}

AVX512 void mancs_sgemm_avx512(int transB, long m, long n, long k, float alpha, const float *a, long lda,
                               const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  // C = beta * C
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return;
    }
    float *const work = threadPackBuffer();
    for (long jc = 0; jc < n; jc += NC) {
        const long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < k; pc += KC) {
            const long kc = k - pc < KC ? k - pc : KC;
            packB(transB, b, ldb, pc, kc, jc, nc, work);
            const float cScale = pc == 0 ? beta : 1;
            for (long ic = 0; ic < m; ic += MC) {
                const long mc = m - ic < MC ? m - ic : MC;
                for (long jp = 0; jp < nc; jp += NR) {
                    const long w = nc - jp < NR ? nc - jp : NR;
                    for (long ir = ic; ir < ic + mc; ir += MR) {
                        const int rows = ic + mc - ir < MR ? (int)(ic + mc - ir) : MR;
                        tile(rows, (int)(w / 16), kc, a + ir * lda + pc, lda, work + jp * kc,
                             c + ir * ldc + jc + jp, ldc, alpha, cScale);
                    }
                }
            }
        }
    }
}

#else  // not x86-64: no kernel; callers use OpenBLAS (Kernels/GEMMKernel.swift never enables it).

int mancs_gemm_avx512_built(void) { return 0; }

void mancs_sgemm_avx512(int transB, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                        long ldb, float beta, float *c, long ldc) {
    (void)transB; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb; (void)beta;
    (void)c; (void)ldc;
    abort();
}

#endif
