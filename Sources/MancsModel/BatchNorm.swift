import Kernels

/// BatchNorm2d (rows = N*H*W) or BatchNorm1d (rows = N) over [rows, channels].
struct BatchNorm {
    let channels: Int
    let gamma: Int, beta: Int
    let runningMean: Int, runningVar: Int
    let momentum: Float, eps: Float
    /// Batch mean and 1/sqrt(var + eps) of the last training forward.
    let saveMean: UnsafeMutablePointer<Float>
    let saveInvStd: UnsafeMutablePointer<Float>
    var range: Range<Int> { gamma..<(beta + channels) }

    init(_ layout: inout StoreLayout, _ buffers: inout StoreLayout, _ arena: Arena, _ name: String,
         channels: Int, config: MancsConfig) {
        self.channels = channels
        gamma = layout.add("\(name).weight", [channels])
        beta = layout.add("\(name).bias", [channels])
        runningMean = buffers.add("\(name).running_mean", [channels])
        runningVar = buffers.add("\(name).running_var", [channels])
        momentum = config.bnMomentum
        eps = config.bnEps
        saveMean = arena.floats(channels)
        saveInvStd = arena.floats(channels)
    }

    func forward(rows: Int, _ stores: StoreBases, training: Bool, input: UnsafePointer<Float>,
                 output: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) { forwardBody(rows: rows, stores, training: training, input: input, output: output) }
    }

    private func forwardBody(rows: Int, _ stores: StoreBases, training: Bool, input: UnsafePointer<Float>,
                             output: UnsafeMutablePointer<Float>) {
        if training {
            batchNormForwardTraining(rows: rows, channels: channels, input: input, gamma: stores.values + gamma,
                                     beta: stores.values + beta, output: output, saveMean: saveMean, saveInvStd: saveInvStd,
                                     runningMean: stores.buffers + runningMean, runningVar: stores.buffers + runningVar,
                                     momentum: momentum, eps: eps, reducer: stores.batchNormReducer)
        } else {
            batchNormForwardInference(rows: rows, channels: channels, input: input, gamma: stores.values + gamma,
                                      beta: stores.values + beta, runningMean: stores.buffers + runningMean,
                                      runningVar: stores.buffers + runningVar, eps: eps, output: output)
        }
    }

    // MARK: BatchNorm + residual (+ ReLU), fused: a residual block's output in one pass

    /// output = BN(input) + residual, then ReLU when `relu`.
    func forwardAdd(rows: Int, _ stores: StoreBases, training: Bool, input: UnsafePointer<Float>,
                    residual: UnsafePointer<Float>, relu: Bool, output: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) {
            if training {
                batchNormAddForwardTraining(rows: rows, channels: channels, input: input, residual: residual,
                                            gamma: stores.values + gamma, beta: stores.values + beta, output: output,
                                            saveMean: saveMean, saveInvStd: saveInvStd,
                                            runningMean: stores.buffers + runningMean, runningVar: stores.buffers + runningVar,
                                            momentum: momentum, eps: eps, relu: relu, reducer: stores.batchNormReducer)
            } else {
                batchNormAddForwardInference(rows: rows, channels: channels, input: input, residual: residual,
                                             gamma: stores.values + gamma, beta: stores.values + beta,
                                             runningMean: stores.buffers + runningMean,
                                             runningVar: stores.buffers + runningVar, eps: eps, output: output, relu: relu)
            }
        }
    }

    /// The training forward's statistics only (saved, running statistics updated), for a
    /// BatchNorm whose output `forwardAdd(residualBN:)` forms inside another's output pass.
    func forwardStatistics(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>) {
        stores.timed(.batchNorm) {
            batchNormStatisticsTraining(rows: rows, channels: channels, input: input, saveMean: saveMean,
                                        saveInvStd: saveInvStd, runningMean: stores.buffers + runningMean,
                                        runningVar: stores.buffers + runningVar, momentum: momentum, eps: eps,
                                        reducer: stores.batchNormReducer)
        }
    }

    /// Training: output = BN(input) + residualBN(residualInput), then ReLU when `relu`, after
    /// `residualBN.forwardStatistics` on residualInput: the residual BN's output is never written.
    func forwardAdd(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, residualBN: BatchNorm,
                    residualInput: UnsafePointer<Float>, relu: Bool, output: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) {
            batchNormAddForwardTraining(rows: rows, channels: channels, input: input, residualInput: residualInput,
                                        residualMean: residualBN.saveMean, residualInvStd: residualBN.saveInvStd,
                                        residualGamma: stores.values + residualBN.gamma,
                                        residualBeta: stores.values + residualBN.beta,
                                        gamma: stores.values + gamma, beta: stores.values + beta, output: output,
                                        saveMean: saveMean, saveInvStd: saveInvStd,
                                        runningMean: stores.buffers + runningMean, runningVar: stores.buffers + runningVar,
                                        momentum: momentum, eps: eps, relu: relu, reducer: stores.batchNormReducer)
        }
    }

    // MARK: BatchNorm + ReLU (fused: one pass, and no pre-ReLU buffer)

    /// output = relu(BN(input)).
    func forwardReLU(rows: Int, _ stores: StoreBases, training: Bool, input: UnsafePointer<Float>,
                     output: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) {
            if training {
                batchNormReLUForwardTraining(rows: rows, channels: channels, input: input, gamma: stores.values + gamma,
                                             beta: stores.values + beta, output: output, saveMean: saveMean,
                                             saveInvStd: saveInvStd, runningMean: stores.buffers + runningMean,
                                             runningVar: stores.buffers + runningVar, momentum: momentum, eps: eps,
                                             reducer: stores.batchNormReducer)
            } else {
                batchNormReLUForwardInference(rows: rows, channels: channels, input: input, gamma: stores.values + gamma,
                                              beta: stores.values + beta, runningMean: stores.buffers + runningMean,
                                              runningVar: stores.buffers + runningVar, eps: eps, output: output)
            }
        }
    }

    /// The training forward's relu(BN(input)) again, bit for bit, from the statistics it
    /// saved (synchronised ones included), for backward: activations that are this
    /// cheap to rebuild are not kept.
    func recomputeReLU(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) {
            batchNormReLURecompute(rows: rows, channels: channels, input: input, gamma: stores.values + gamma,
                                   beta: stores.values + beta, saveMean: saveMean, saveInvStd: saveInvStd, output: output)
        }
    }

    /// Backward of `forwardReLU` (training); the ReLU mask comes from `input` and the
    /// saved statistics, so the post-ReLU output need not be at hand.
    func backwardReLU(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>,
                      gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) {
            batchNormReLUBackward(rows: rows, channels: channels, input: input, gamma: stores.values + gamma,
                                  beta: stores.values + beta, saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput,
                                  gradInput: gradInput, gradGamma: stores.grads + gamma, gradBeta: stores.grads + beta,
                                  reducer: stores.batchNormReducer)
        }
    }

    /// `backward` with the gradient sums already formed by the pass that produced
    /// gradOutput (`Kernels.reluBackwardWithBatchNormSums`).
    func backward(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>, sums: BatchNormGradientSums) {
        stores.timed(.batchNorm) {
            batchNormBackward(rows: rows, channels: channels, input: input, gamma: stores.values + gamma, saveMean: saveMean,
                              saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                              gradGamma: stores.grads + gamma, gradBeta: stores.grads + beta, sums: sums,
                              reducer: stores.batchNormReducer)
        }
    }

    func backward(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.batchNorm) {
            batchNormBackward(rows: rows, channels: channels, input: input, gamma: stores.values + gamma, saveMean: saveMean,
                              saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                              gradGamma: stores.grads + gamma, gradBeta: stores.grads + beta, reducer: stores.batchNormReducer)
        }
    }
}
