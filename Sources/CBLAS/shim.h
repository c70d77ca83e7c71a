#pragma once
#include <cblas.h>
// OpenBLAS thread control (declared in OpenBLAS's cblas.h; repeated for clarity).
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

// A spin-wait hint for the kernels' thread pool (PAUSE on x86, YIELD on ARM).
static inline void mancs_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// OpenBLAS's runtime kernel choice (declared in cblas.h; repeated for clarity).
char *openblas_get_corename(void);

// CPUID and XGETBV, to tell which BLAS kernels this CPU and OS can run
// (Kernels/BLASCore.swift). Zeros where the instruction does not exist.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static inline void mancs_cpuid(unsigned leaf, unsigned subleaf, unsigned out[4]) {
    out[0] = out[1] = out[2] = out[3] = 0;
    if (leaf > __get_cpuid_max(leaf & 0x80000000u, 0)) return;
    __cpuid_count(leaf, subleaf, out[0], out[1], out[2], out[3]);
}
/// XCR0: which register states the OS saves (bits 1-2 SSE/AVX, 5-7 AVX-512).
static inline unsigned long long mancs_xgetbv0(void) {
    unsigned r[4];
    mancs_cpuid(1, 0, r);
    if (!(r[2] & (1u << 27))) return 0;  // no OSXSAVE
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#else
static inline void mancs_cpuid(unsigned leaf, unsigned subleaf, unsigned out[4]) {
    (void)leaf; (void)subleaf; out[0] = out[1] = out[2] = out[3] = 0;
}
static inline unsigned long long mancs_xgetbv0(void) { return 0; }
#endif
