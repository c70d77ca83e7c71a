import Kernels

// Where a layer's tensors sit: offsets into the flat parameter and buffer stores,
// fixed at build time, and the base pointers every layer call receives.

/// Collects tensor names and shapes in PyTorch's registration order while the
/// network is built; the offsets it hands out are those `ParameterStore` lays out.
struct StoreLayout {
    var shapes: [(name: String, shape: [Int])] = []
    var count = 0

    mutating func add(_ name: String, _ shape: [Int]) -> Int {
        let offset = count
        shapes.append((name, shape))
        count += shape.reduce(1, *)
        return offset
    }
}

/// Base pointers of the three flat stores, handed to every layer call.
struct StoreBases {
    let values: UnsafeMutablePointer<Float>
    let grads: UnsafeMutablePointer<Float>
    let buffers: UnsafeMutablePointer<Float>
    /// Set while profiling (see `LayerProfiler`).
    var profiler: LayerProfiler? = nil
    /// Set for synchronised BatchNorm (see `MancsNetwork.batchNormReducer`).
    var batchNormReducer: BatchNormStatisticsReducer? = nil
}
