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
