/// output[rows, out] = input[rows, in] * weight[out, in]^T + bias[out].
public func linearForward(rows: Int, inFeatures: Int, outFeatures: Int,
                          input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    guard rows > 0, outFeatures > 0 else { return }
    if let bias {
        for r in 0..<rows { (output + r &* outFeatures).update(from: bias, count: outFeatures) }
    }
    guard inFeatures > 0 else {
        if bias == nil { output.update(repeating: 0, count: rows * outFeatures) }
        return
    }
    sgemm(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
          alpha: 1, a: input, lda: inFeatures, b: weight, ldb: inFeatures,
          beta: bias == nil ? 0 : 1, c: output, ldc: outFeatures)
}

/// gradWeight += gradOutput^T * input; gradBias += column sums of gradOutput;
/// gradInput = gradOutput * weight (skipped when nil).
public func linearBackward(rows: Int, inFeatures: Int, outFeatures: Int,
                           input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                           gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?) {
    guard rows > 0, outFeatures > 0, inFeatures > 0 else {
        if let gradInput { gradInput.update(repeating: 0, count: rows * inFeatures) }
        return
    }
    sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
          alpha: 1, a: gradOutput, lda: outFeatures, b: input, ldb: inFeatures,
          beta: 1, c: gradWeight, ldc: inFeatures)
    if let gradBias { accumulateColumnSums(rows: rows, columns: outFeatures, gradOutput, into: gradBias) }
    if let gradInput {
        sgemm(transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures,
              alpha: 1, a: gradOutput, lda: outFeatures, b: weight, ldb: inFeatures,
              beta: 0, c: gradInput, ldc: inFeatures)
    }
}

/// sums[c] += sum over rows of x[r, c]: Float sums over blocks of 256 rows (sixteen
/// columns per vector operation; explicit vectors, as the compiler cannot prove the
/// sums and x apart), added in Double. The blocks go to the compute threads in
/// contiguous runs, each run's totals are added in run order, so the result depends
/// only on the thread count (the bias gradients of the attention convolutions: up to
/// 16 M floats per call).
func accumulateColumnSums(rows: Int, columns: Int, _ x: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Float>) {
    let block = 256
    let blocks = (rows + block - 1) / block
    let parts = computeThreads
    let totals = UnsafeMutablePointer<Double>.allocate(capacity: parts * columns)
    defer { totals.deallocate() }
    totals.initialize(repeating: 0, count: parts * columns)
    forEachPart(work: rows &* columns) { part, ranParts in
        let blockRange = partRange(blocks, part: part, parts: ranParts)
        let total = totals + part &* columns
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { partial.deallocate() }
        var start = min(rows, blockRange.lowerBound * block)
        let stop = min(rows, blockRange.upperBound * block)
        while start < stop {
            let end = min(stop, start + block)
            partial.update(repeating: 0, count: columns)
            for r in start..<end {
                let row = x + r &* columns
                forEachVectorRun(columns, width: 16) { c0, n in
                    storeVector(loadVector(partial + c0, count: n) + loadVector(row + c0, count: n, as: SIMD16<Float>.self),
                                partial + c0, count: n)
                }
            }
            for c in 0..<columns { total[c] += Double(partial[c]) }
            start = end
        }
    }
    for c in 0..<columns {
        var sum = 0.0
        for part in 0..<parts { sum += totals[part &* columns &+ c] }
        sums[c] += Float(sum)
    }
}
