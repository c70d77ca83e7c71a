// The kernel contract. Every layer of the model is a pair of free functions,
// `xForward` beside `xBackward`, over raw float pointers with explicit shapes
// (llm.c style). Conventions, shared by every kernel:
//
// - Activations are NHWC: element (n, y, x, c) of an N x H x W x C map sits at
//   ((n * H + y) * W + x) * C + c. A [rows, channels] matrix is the same thing
//   with rows = N * H * W, which is why BatchNorm2d and BatchNorm1d share code.
// - Conv weights are stored internally as [outChannels, kernel, kernel, inChannels]
//   ("OHWI"); files use PyTorch's OIHW and are converted at the file boundary.
//   Linear weights are [out, in] as in PyTorch.
// - Backward functions ACCUMULATE (+=) into parameter gradients and OVERWRITE
//   (=) input gradients. Where two paths meet, the caller adds them.
// - Forward outputs are overwritten. Unless a comment says so, input and output
//   must not alias.
// - All GEMMs go through `sgemm` (single-threaded calls: OpenBLAS, or mancs's own
//   AVX-512 kernel for the thin ones, GEMMKernel.swift); kernels split
//   their work over the threads set once with `setComputeThreads` (ComputeThreads.swift).
//
// This file holds the signatures; each kernel family lives in its own file.

// MARK: Argument checks

/// Stops with a one-line message naming the kernel and the bad argument. Unlike
/// `precondition`, this stays on in -Ounchecked builds (the Kernels target's
/// release setting); it is only used once per call, never per element.
@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
