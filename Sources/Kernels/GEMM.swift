import CBLAS

/// Row-major C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C.
///
/// With several compute threads (`setComputeThreads`) the product is split over
/// them, each part one single-threaded call (`blasSgemm`: mancs's AVX-512 kernel or OpenBLAS): by rows of C when m is the
/// larger side, by columns when n is, and by the reduction when k dominates both
/// (the convolutions' weight gradients, e.g. 64 x 256 x 131072): each extra part
/// then sums into its own scratch matrix, added to C in part order afterwards.
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
          beta: beta, c: c, ldc: ldc, using: blasSgemm)
}

/// A single-threaded GEMM call with `blasSgemm`'s arguments.
typealias SingleThreadSgemm = (
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) -> Void

/// `sgemm` with each part run by `blasSgemm` (any kernel) or `openblasSgemm` (the
/// BLAS rate the network is measured against, `measureSgemmGFLOPs`).
func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, using blasSgemm: SingleThreadSgemm
) {
    guard m > 0, n > 0 else { return }
    let work = m &* n &* max(k, 1)
    if k >= 4 * max(m, n) && k >= 256 {
        sgemmSplitK(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                    b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, work: work, using: blasSgemm)
        return
    }
    forEachPart(work: work) { part, parts in
        if parts == 1 {
            blasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        } else if m >= n {
            let rows = partRange(m, part: part, parts: parts, align: 16)
            guard !rows.isEmpty else { return }
            let aPart = transA ? a + rows.lowerBound : a + rows.lowerBound &* lda
            blasSgemm(transA, transB, rows.count, n, k, alpha, aPart, lda, b, ldb, beta,
                      c + rows.lowerBound &* ldc, ldc)
        } else {
            let cols = partRange(n, part: part, parts: parts, align: 16)
            guard !cols.isEmpty else { return }
            let bPart = transB ? b + cols.lowerBound &* ldb : b + cols.lowerBound
            blasSgemm(transA, transB, m, cols.count, k, alpha, a, lda, bPart, ldb, beta,
                      c + cols.lowerBound, ldc)
        }
    }
}

/// The reduction split of `sgemm`: part 0 accumulates its share of k into C (with
/// beta), part p > 0 writes its share into scratch slice p - 1; then the slices are
/// added to C in part order, split by rows.
private func sgemmSplitK(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, work: Int, using blasSgemm: SingleThreadSgemm
) {
    withComputePool(work: work) { pool in
        guard let pool else {
            blasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let extra = pool.size - 1
        let scratch = pool.scratch(floats: extra * m * n)
        pool.dispatch { part, parts in
            let ks = partRange(k, part: part, parts: parts, align: 64)
            let aPart = transA ? a + ks.lowerBound &* lda : a + ks.lowerBound
            let bPart = transB ? b + ks.lowerBound : b + ks.lowerBound &* ldb
            if part == 0 {
                blasSgemm(transA, transB, m, n, ks.count, alpha, aPart, lda, bPart, ldb, beta, c, ldc)
            } else {
                let out = scratch + (part - 1) &* m &* n
                if ks.isEmpty { out.update(repeating: 0, count: m * n); return }
                blasSgemm(transA, transB, m, n, ks.count, alpha, aPart, lda, bPart, ldb, 0, out, n)
            }
        }
        pool.dispatch { part, parts in
            for r in partRange(m, part: part, parts: parts) {
                let cRow = c + r &* ldc
                for p in 0..<extra {
                    let sRow = scratch + (p &* m &* n &+ r &* n)
                    for j in 0..<n { cRow[j] += sRow[j] }
                }
            }
        }
    }
}

/// One single-threaded GEMM call: mancs's AVX-512 kernel for the calls it takes
/// (GEMMKernel.swift), OpenBLAS for the rest.
@inline(__always)
func blasSgemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    if GEMMKernel.ownKernelEnabled && GEMMKernel.handles(transA: transA, n: n, k: k) {
        GEMMKernel.ownSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    } else {
        openblasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

/// One single-threaded OpenBLAS sgemm call.
@inline(__always)
func openblasSgemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
