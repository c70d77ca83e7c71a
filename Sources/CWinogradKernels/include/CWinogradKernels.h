#ifndef CWINOGRADKERNELS_H
#define CWINOGRADKERNELS_H

// The tile transforms of Winograd F(2x2, 3x3) (Sources/Kernels/Winograd.swift)
// and F(4x4, 3x3) (Winograd4x4.swift)
// with AVX-512, 16 channels per instruction. They compute exactly what the Swift
// transforms compute (the same float operations in the same order), so results
// are bit for bit the same; Swift stays the fallback for CPUs without AVX-512
// and for channel counts that are not multiples of 16.
//
// Tiles are numbered over an NHWC batch: t -> image t / (th * tw), tile row
// (t / tw) % th, tile column t % tw, with th x tw output tiles (2x2, or 4x4 for
// F(4x4)) per image. Point p of tile t is row (t - firstRow) of the p-th of the
// 16 (or 36) row-major matrices `points[p]` with `channels` columns. Only call on a CPU with AVX-512 F
// enabled by the operating system.

// 1 on x86-64 builds, which have the kernels.
int mancs_winograd_avx512_built(void);

// V = B^T d B for the 4x4 input patch d of each tile in [t0, t1): the patch of
// tile (ty, tx) starts at (2ty - 1, 2tx - 1); pixels outside the H x W image are 0.
// c must be a multiple of 16.
void mancs_winograd_input_avx512(long t0, long t1, long firstRow, long H, long W, long c, long th, long tw,
                                 const float *input, float *const points[16]);

// Y = A^T M A (+ bias[k] when bias is not NULL) for each tile in [t0, t1), written
// to the oh x ow x k output map; the parts of a tile outside the map are dropped.
// k must be a multiple of 16.
void mancs_winograd_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                  const float *const points[16], const float *bias, float *output);

// dM = A dY A^T for each tile in [t0, t1), dY the tile of the oh x ow x k output
// gradient (0 outside the map). k must be a multiple of 16.
void mancs_winograd_grad_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                       const float *gradOutput, float *const points[16]);

// The same three for F(4x4, 3x3) (Kernels/Winograd4x4.swift): 4x4 output tiles,
// 6x6 input patches at (4ty - 1, 4tx - 1), 36 points.
void mancs_winograd4_input_avx512(long t0, long t1, long firstRow, long H, long W, long c, long th, long tw,
                                  const float *input, float *const points[36]);
void mancs_winograd4_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                   const float *const points[36], const float *bias, float *output);
void mancs_winograd4_grad_output_avx512(long t0, long t1, long firstRow, long oh, long ow, long k, long th, long tw,
                                        const float *gradOutput, float *const points[36]);

#endif
