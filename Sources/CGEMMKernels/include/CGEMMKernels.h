#ifndef CGEMMKERNELS_H
#define CGEMMKERNELS_H

// mancs's own single-precision GEMM kernel for AVX-512 CPUs, for the thin
// shapes of a convolution network (many rows, 64-2048 columns), where OpenBLAS
// spends much of its time packing. Row-major, one thread per call; the caller
// splits the work over threads (Sources/Kernels/GEMM.swift).

// 1 on x86-64 builds, which have the kernel; whether the CPU and the operating
// system run it is the caller's check (CPUFeatures in Kernels/BLASCore.swift).
int mancs_gemm_avx512_built(void);

// C[m,n] = alpha * A[m,k] * op(B)[k,n] + beta * C, row-major, A not transposed
// (A(i,p) = a[i*lda + p]); op(B)(p,j) = b[p*ldb + j], or b[j*ldb + p] with
// transB. n must be a multiple of 16. beta == 0 never reads C. Only call on a
// CPU with AVX-512 F/BW/DQ/VL enabled by the OS.
void mancs_sgemm_avx512(int transB, long m, long n, long k, float alpha,
                        const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc);

#endif
