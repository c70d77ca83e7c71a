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

/// sums[c] += sum over rows of x[r, c]. Blocks of rows are summed in Float (vectorised)
/// and the block sums are gathered in Double, so long columns stay accurate.
func accumulateColumnSums(rows: Int, columns: Int, _ x: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Float>) {
    let block = 256
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: columns)
    let total = UnsafeMutablePointer<Double>.allocate(capacity: columns)
    defer { partial.deallocate(); total.deallocate() }
    total.initialize(repeating: 0, count: columns)
    var start = 0
    while start < rows {
        let end = min(rows, start + block)
        partial.initialize(repeating: 0, count: columns)
        for r in start..<end {
            let row = x + r &* columns
            for c in 0..<columns { partial[c] += row[c] }
        }
        for c in 0..<columns { total[c] += Double(partial[c]) }
        start = end
    }
    for c in 0..<columns { sums[c] += Float(total[c]) }
}
