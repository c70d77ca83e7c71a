// BatchNorm's sums over rows: the batch statistics (mean and variance, and their
// sum over replicas), the gradient sums of backward, and the one partition of the
// rows that every such pass shares, so passes that sum the same rows sum them in
// the same order. The layer's forward and backward passes are in Normalization.swift.

/// Turns this shard's per-channel mean and biased variance into the whole batch's:
/// one allreduce of [rows, sum, sum of squares] in Double (whose 53 bits make the
/// E[x^2] - E[x]^2 cancellation harmless at BatchNorm's scales). Returns the batch's rows.
func globalMoments(rows: Int, channels: Int, mean: UnsafeMutableBufferPointer<Double>,
                           variance: UnsafeMutableBufferPointer<Double>,
                           _ reducer: BatchNormStatisticsReducer) -> Double {
    var sums = [Double](repeating: 0, count: 1 + 2 * channels)
    return sums.withUnsafeMutableBufferPointer { all in
        let n = Double(rows)
        all[0] = n
        for c in 0..<channels {
            all[1 + c] = n * mean[c]
            all[1 + channels + c] = n * (variance[c] + mean[c] * mean[c])
        }
        reducer.sumOverReplicas(all)
        let total = all[0]
        for c in 0..<channels {
            mean[c] = all[1 + c] / total
            variance[c] = max(all[1 + channels + c] / total - mean[c] * mean[c], 0)
        }
        return total
    }
}

/// Rows per statistics block: a block of about 64 KiB stays in cache for its second
/// sweep; within a block sums are Float (vectorised), across blocks Double.
private func blockRows(channels: Int) -> Int { max(4, 16_384 / max(1, channels)) }

/// The one partition every statistics pass shares: the rows' blocks (`blockRows`, or
/// `block` rows when given) are cut into `PieceSchedule` runs, which the compute
/// threads take as they come free; `run` gets its run's rows, the block size and
/// `stride` zeroed Doubles of output; then `merge` gets every run's output, run after
/// run (runs with no rows left at zero). So passes that sum the same rows (the gradient
/// sums, and the ReLU backward that forms them) sum them in the same order, and a
/// result depends only on the thread count, not on which thread ran which run.
func overBlockRuns(rows: Int, channels: Int, block: Int? = nil, stride: Int,
                   run: (_ rows: Range<Int>, _ block: Int, _ out: UnsafeMutablePointer<Double>) -> Void,
                   merge: (_ perRun: UnsafePointer<Double>, _ runs: Int) -> Void) {
    let block = block ?? blockRows(channels: channels)
    let blocks = (rows + block - 1) / block
    withComputePool(work: rows &* channels) { pool in
        let schedule = PieceSchedule(blocks, parts: pool?.size ?? 1), runs = schedule.pieces
        let perRun = UnsafeMutablePointer<Double>.allocate(capacity: runs * stride)
        defer { perRun.deallocate() }
        perRun.update(repeating: 0, count: runs * stride)
        func runPiece(_ piece: Int) {
            let runBlocks = schedule.range(piece)
            run(min(rows, runBlocks.lowerBound * block)..<min(rows, runBlocks.upperBound * block), block, perRun + piece &* stride)
        }
        if let pool { pool.dispatchPieces(schedule) { piece, _ in runPiece(piece) } } else { runPiece(0) }
        merge(perRun, runs)
    }
}

/// Per-channel mean and biased variance in one read of the input: each block is
/// reduced with the two-pass formula while it is in cache, and blocks are merged
/// in Double with Chan et al.'s pairwise update, so no E[x^2] - E[x]^2 cancellation.
/// Blocks are shared among the compute threads in contiguous runs; each run is merged
/// on its own, then the runs in order, so the result depends only on the thread count.
func meanAndBiasedVariance(rows: Int, channels: Int, _ x: UnsafePointer<Float>,
                                   mean: UnsafeMutablePointer<Double>, variance: UnsafeMutablePointer<Double>) {
    // Per part: count, then mean[channels] and M2[channels].
    let stride = 1 + 2 * channels
    overBlockRuns(rows: rows, channels: channels, stride: stride, run: { rowRange, block, out in
        out[0] = Double(rowRange.count)
        blockMoments(rowRange, block: block, channels: channels, x, mean: out + 1, m2: out + 1 + channels)
    }, merge: { perPart, parts in
        mean.update(repeating: 0, count: channels)
        variance.update(repeating: 0, count: channels)  // holds M2 until the end
        var merged = 0.0
        for part in 0..<parts {
            let p = perPart + part &* stride
            let nB = p[0]
            guard nB > 0 else { continue }
            if merged == 0 {  // the first run with rows: taken as it is
                mean.update(from: p + 1, count: channels)
                variance.update(from: p + 1 + channels, count: channels)
                merged = nB
                continue
            }
            let nA = merged, n = nA + nB
            for c in 0..<channels {
                let delta = p[1 &+ c] - mean[c]
                mean[c] += delta * nB / n
                variance[c] += p[1 &+ channels &+ c] + delta * delta * nA * nB / n
            }
            merged = n
        }
    })
    let invRows = 1 / Double(rows)
    for c in 0..<channels { variance[c] *= invRows }
}

/// sums[c] += x[r, c] for the rows `rows`, in row order, sixteen channels per vector
/// operation (explicit vectors: the compiler cannot prove the sums and x apart).
func addRows(_ rows: Range<Int>, channels: Int, _ x: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Float>) {
    for r in rows {
        let row = x + r &* channels
        forEachVectorRun(channels, width: 16) { c0, n in
            storeVector(loadVector(sums + c0, count: n) + loadVector(row + c0, count: n, as: SIMD16<Float>.self),
                        sums + c0, count: n)
        }
    }
}

/// Mean and M2 (sum of squared deviations) per channel of the rows `rowRange`, block by block
/// (Float within a block, Chan's merge in Double across blocks). Overwrites mean and m2.
private func blockMoments(_ rowRange: Range<Int>, block: Int, channels: Int, _ x: UnsafePointer<Float>,
                          mean: UnsafeMutablePointer<Double>, m2: UnsafeMutablePointer<Double>) {
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { partial.deallocate() }
    let blockMean = partial + channels
    mean.update(repeating: 0, count: channels)
    m2.update(repeating: 0, count: channels)
    var start = rowRange.lowerBound
    while start < rowRange.upperBound {
        let end = min(rowRange.upperBound, start + block)
        let count = end - start
        // Block mean, then M2 about it (the block is still in cache). Rows in order,
        // sixteen channels per vector operation into the per-channel sums (explicit
        // vectors: the compiler cannot prove the sums and the input apart); each
        // channel's sum runs over the rows in order.
        partial.update(repeating: 0, count: channels)
        addRows(start..<end, channels: channels, x, into: partial)
        let invCount = 1 / Float(count)
        for c in 0..<channels { blockMean[c] = partial[c] * invCount }
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let row = x + r &* channels
            forEachVectorRun(channels, width: 16) { c0, n in
                let d = loadVector(row + c0, count: n) - loadVector(blockMean + c0, count: n, as: SIMD16<Float>.self)
                storeVector(loadVector(partial + c0, count: n) + d * d, partial + c0, count: n)
            }
        }
        // Merge (Chan et al.): M2 += M2_b + delta^2 * n_a * n_b / n.
        let nA = Double(start - rowRange.lowerBound), nB = Double(count), n = nA + nB
        for c in 0..<channels {
            let delta = Double(blockMean[c]) - mean[c]
            mean[c] += delta * nB / n
            m2[c] += Double(partial[c]) + delta * delta * nA * nB / n
        }
        start = end
    }
}

/// sumG[c] = sum_r g[r, c] and sumGX[c] = sum_r g[r, c] * (x[r, c] - mean[c]), in one read
/// (g masked by the forward's ReLU, x * scale + shift > 0, when `reluFold` is given). Blocks are shared among the compute threads in
/// contiguous runs, each summed in Double, then the runs added in order.
func gradientSums(rows: Int, channels: Int, input: UnsafePointer<Float>, reluFold: UnsafePointer<Float>?,
                          mean: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                          sumG: UnsafeMutablePointer<Double>, sumGX: UnsafeMutablePointer<Double>) {
    overBlockRuns(rows: rows, channels: channels, stride: 2 * channels, run: { rowRange, block, outG in
        let outGX = outG + channels
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
        defer { partial.deallocate() }
        let partialX = partial + channels
        var start = rowRange.lowerBound
        // Rows in order, sixteen channels per vector operation into the per-channel sums
        // (explicit vectors, as in `blockMoments`).
        while start < rowRange.upperBound {
            let end = min(rowRange.upperBound, start + block)
            partial.update(repeating: 0, count: 2 * channels)
            for r in start..<end {
                let x = input + r &* channels, g = gradOutput + r &* channels
                forEachVectorRun(channels, width: 16) { c0, n in
                    let xv: SIMD16<Float> = loadVector(x + c0, count: n)
                    var gv: SIMD16<Float> = loadVector(g + c0, count: n)
                    if let reluFold {
                        let pre = xv * loadVector(reluFold + c0, count: n) + loadVector(reluFold + (channels &+ c0), count: n)
                        gv = SIMD16<Float>().replacing(with: gv, where: pre .> 0)
                    }
                    storeVector(loadVector(partial + c0, count: n) + gv, partial + c0, count: n)
                    storeVector(loadVector(partialX + c0, count: n) + gv * (xv - loadVector(mean + c0, count: n)),
                                partialX + c0, count: n)
                }
            }
            for c in 0..<channels {
                outG[c] += Double(partial[c])
                outGX[c] += Double(partialX[c])
            }
            start = end
        }
    }, merge: { perPart, parts in
        sumG.update(repeating: 0, count: channels)
        sumGX.update(repeating: 0, count: channels)
        for part in 0..<parts {
            let g = perPart + part &* 2 &* channels, gx = g + channels
            for c in 0..<channels {
                sumG[c] += g[c]
                sumGX[c] += gx[c]
            }
        }
    })
}

// MARK: ReLU backward fused with BatchNorm gradient sums

/// gradInput = gradOutput where output > 0, else 0 (`reluBackward`; in place allowed),
/// and in the same pass the gradient sums of the BatchNorms whose output gradient that
/// is: one or two (`second`), given by their input and saved mean. A residual block's
/// final ReLU feeds bn3 and a projection shortcut's BN alike; reading the gradient once
/// for all of them saves a read of the map per BatchNorm. Each result is bit for bit
/// what `batchNormBackward` would sum from gradInput itself (`gradientSums`: the same
/// blocks, the same parts, rows in order; sum_r g is shared, being the same numbers).
public func reluBackwardWithBatchNormSums(
    rows: Int, channels: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
    gradInput: UnsafeMutablePointer<Float>,
    first: (input: UnsafePointer<Float>, mean: UnsafePointer<Float>),
    second: (input: UnsafePointer<Float>, mean: UnsafePointer<Float>)? = nil
) -> [BatchNormGradientSums] {
    let inputs = second.map { [first, $0] } ?? [first]
    let (sumG, sumGX) = reluBackwardSums(rows: rows, channels: channels, output: output, gradOutput: gradOutput,
                                         gradInput: gradInput, inputs: inputs)
    return sumGX.map { BatchNormGradientSums(sumG: sumG, sumGX: $0) }
}

/// `reluBackward` that also returns sum_r of the masked gradient per channel, in Double
/// (this replica's rows): for a BatchNorm whose input is not at hand, whose backward then
/// needs only that sum (`pointwiseConvBatchNormBackward`). The same blocks and parts as
/// `reluBackwardWithBatchNormSums`, so the same sums bit for bit.
public func reluBackwardWithSums(
    rows: Int, channels: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
    gradInput: UnsafeMutablePointer<Float>
) -> [Double] {
    reluBackwardSums(rows: rows, channels: channels, output: output, gradOutput: gradOutput, gradInput: gradInput,
                     inputs: []).sumG
}

/// The pass of both: sum_r g, and sum_r g * (x - mean) for each of zero to two `inputs`.
private func reluBackwardSums(
    rows: Int, channels: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
    gradInput: UnsafeMutablePointer<Float>, inputs: [(input: UnsafePointer<Float>, mean: UnsafePointer<Float>)]
) -> (sumG: [Double], sumGX: [[Double]]) {
    let k = inputs.count
    precondition(k <= 2, "reluBackwardSums: at most two BatchNorm inputs")
    // Per part: sumG, then sumGX of each input.
    let stride = (1 + k) &* channels
    var sumG = [Double](repeating: 0, count: channels)
    var sumGX = [[Double]](repeating: [Double](repeating: 0, count: channels), count: k)
    overBlockRuns(rows: rows, channels: channels, stride: stride, run: { rowRange, block, out in
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: stride)
        defer { partial.deallocate() }
        // With no input, x0 and m0 are never read (k == 0); any valid pointer stands in.
        let x0 = k > 0 ? inputs[0].input : gradOutput, m0 = k > 0 ? inputs[0].mean : gradOutput
        let x1 = k > 1 ? inputs[1].input : x0, m1 = k > 1 ? inputs[1].mean : m0
        var start = rowRange.lowerBound
        while start < rowRange.upperBound {
            let end = min(rowRange.upperBound, start + block)
            partial.update(repeating: 0, count: stride)
            for r in start..<end {
                let row = r &* channels
                let o = output + row, g = gradOutput + row, gi = gradInput + row
                forEachVectorRun(channels, width: 16) { c0, n in
                    let raw: SIMD16<Float> = loadVector(g + c0, count: n)
                    let gv = SIMD16<Float>().replacing(with: raw, where: loadVector(o + c0, count: n) .> 0)
                    storeVector(gv, gi + c0, count: n)
                    storeVector(loadVector(partial + c0, count: n) + gv, partial + c0, count: n)
                    if k > 0 {
                        let s0 = partial + (channels &+ c0)
                        storeVector(loadVector(s0, count: n) + gv * (loadVector(x0 + (row &+ c0), count: n)
                                                                   - loadVector(m0 + c0, count: n)), s0, count: n)
                    }
                    if k > 1 {
                        let s1 = partial + (2 &* channels &+ c0)
                        storeVector(loadVector(s1, count: n) + gv * (loadVector(x1 + (row &+ c0), count: n)
                                                                   - loadVector(m1 + c0, count: n)), s1, count: n)
                    }
                }
            }
            for i in 0..<stride { out[i] += Double(partial[i]) }
            start = end
        }
    }, merge: { perPart, parts in
        for part in 0..<parts {
            let p = perPart + part &* stride
            for c in 0..<channels { sumG[c] += p[c] }
            for i in 0..<k {
                for c in 0..<channels { sumGX[i][c] += p[(1 &+ i) &* channels &+ c] }
            }
        }
    })
    return (sumG, sumGX)
}
