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
    let profiling = GEMMShapeProfile.isOn
    let start = profiling ? monotonicNanoseconds() : 0
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
          beta: beta, c: c, ldc: ldc, using: blasSgemm)
    if profiling {
        GEMMShapeProfile.record(transA: transA, transB: transB, m: m, n: n, k: k, nanoseconds: monotonicNanoseconds() - start)
    }
}

/// Whether `sgemm` splits this product by the reduction: when k dominates both sides
/// (the convolutions' weight gradients, e.g. 64 x 256 x 131072).
@inline(__always)
func splitsReduction(m: Int, n: Int, k: Int) -> Bool { k >= 4 * max(m, n) && k >= 256 }

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
    if splitsReduction(m: m, n: n, k: k) {
        sgemmSplitK(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                    b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, work: work, using: blasSgemm)
        return
    }
    withComputePool(work: work) { pool in
        guard let pool else {
            blasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        // Rows (or columns) in pieces (`PieceSchedule`); every piece is a whole GEMM of
        // its rows (columns) over all of k, so its result does not depend on the thread.
        // At least 1024 rows a piece: each call packs all of the other operand again.
        let byRows = m >= n
        let schedule = PieceSchedule(byRows ? m : n, parts: pool.size, align: 16, minPiece: 1024)
        pool.dispatchPieces(schedule) { piece, _ in
            let rows = schedule.range(piece), lo = rows.lowerBound, count = rows.count
            guard count > 0 else { return }
            if byRows {
                let aPart = transA ? a + lo : a + lo &* lda
                blasSgemm(transA, transB, count, n, k, alpha, aPart, lda, b, ldb, beta, c + lo &* ldc, ldc)
            } else {
                let bPart = transB ? b + lo &* ldb : b + lo
                blasSgemm(transA, transB, m, count, k, alpha, a, lda, bPart, ldb, beta, c + lo, ldc)
            }
        }
    }
}

/// The reduction split of `sgemm`: k in pieces (`PieceSchedule`, at least 1024 deep, at
/// most as many as `splitKScratchFloats` of slices hold, at least one per thread); piece 0
/// accumulates into C (with beta), piece p > 0 writes into scratch slice p - 1, each
/// taken by the next free thread; then the slices are added to C in piece order,
/// split by rows. The pieces depend only on the shape and the thread count.
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
        let maxPieces = max(pool.size, 1 + splitKScratchFloats / (m * n))
        let schedule = PieceSchedule(k, parts: pool.size, align: 64, minPiece: 1024, maxPieces: maxPieces)
        let extra = schedule.pieces - 1
        let scratch = pool.scratch(floats: extra * m * n)
        pool.dispatchPieces(schedule) { piece, _ in
            let ks = schedule.range(piece), k0 = ks.lowerBound, kCount = ks.count
            let aPart = transA ? a + k0 &* lda : a + k0
            let bPart = transB ? b + k0 : b + k0 &* ldb
            if piece == 0 {
                blasSgemm(transA, transB, m, n, kCount, alpha, aPart, lda, bPart, ldb, beta, c, ldc)
            } else {
                let out = scratch + (piece - 1) &* m &* n
                if kCount == 0 { out.update(repeating: 0, count: m * n); return }
                blasSgemm(transA, transB, m, n, kCount, alpha, aPart, lda, bPart, ldb, 0, out, n)
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

/// Floats of partial products the reduction split may keep beyond one slice per extra
/// thread (4 MiB: more pieces for the small weight gradients of early stages; the
/// larger late-stage ones keep one slice per thread, as much as before).
let splitKScratchFloats = 1 << 20

/// One single-threaded GEMM call: mancs's AVX-512 kernel for the calls it takes
/// (GEMMKernel.swift), OpenBLAS for the rest.
@inline(__always)
func blasSgemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    if GEMMKernel.runs(transA: transA, n: n, k: k) {
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
