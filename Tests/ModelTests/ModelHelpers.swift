import MancsModel
import TestSupport

/// The same configuration as shared/fixtures/mancs-small-ls1.h5.
func smallFixtureConfig() -> MancsConfig {
    var c = MancsConfig()
    c.baseWidth = 8
    c.blocks = [1, 1, 2, 1]
    c.lastStride = 1
    c.attentionStages = [2, 4]
    c.numClasses = 5
    c.height = 64
    c.width = 32
    return c
}

/// Random NHWC images for a network's input size.
func randomImages(_ c: MancsConfig, batch: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return rng.array(batch * c.height * c.width * 3)
}

/// sum(a * b) in Double.
func dot(_ a: UnsafePointer<Float>, _ b: [Float]) -> Double {
    var s = 0.0
    for i in b.indices { s += Double(a[i]) * Double(b[i]) }
    return s
}
