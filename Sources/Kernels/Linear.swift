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

/// sums[c] += sum over rows of x[r, c]: Float sums over blocks of 256 rows (`addRows`),
/// added in Double. The blocks go to the compute threads in contiguous runs
/// (`overBlockRuns`), each run's totals are added in run order, so the result depends
/// only on the thread count (the bias gradients of the attention convolutions: up to
/// 16 M floats per call).
func accumulateColumnSums(rows: Int, columns: Int, _ x: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Float>) {
    overBlockRuns(rows: rows, channels: columns, block: 256, stride: columns, run: { rowRange, block, total in
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { partial.deallocate() }
        var start = rowRange.lowerBound
        while start < rowRange.upperBound {
            let end = min(rowRange.upperBound, start + block)
            partial.update(repeating: 0, count: columns)
            addRows(start..<end, channels: columns, x, into: partial)
            for c in 0..<columns { total[c] += Double(partial[c]) }
            start = end
        }
    }, merge: { perPart, parts in
        for c in 0..<columns {
            var sum = 0.0
            for part in 0..<parts { sum += perPart[part &* columns &+ c] }
            sums[c] += Float(sum)
        }
    })
}
