import DeterministicRandom
import Testing

/// Every seeded stream of the project (initial weights, synthetic data, sampling,
/// augmentation, negatives, CUHK03 draws) comes from `SplitMix64`: these pin it.
@Suite struct SplitMix64Tests {
    @Test func firstOutputsAreTheReferenceSplitMix64s() {
        // Steele, Lea and Flood's SplitMix64 from state 0 (the published sequence).
        var r = SplitMix64(seed: 0)
        #expect(r.next() == 0xE220_A839_7B1D_CDAF)
        #expect(r.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(r.next() == 0x06C4_5D18_8009_454F)
    }

    @Test func keysArePinned() {
        // Values of today's `key`: a change here changes every sampled batch and augmentation.
        #expect(SplitMix64.key(0x5045_524D ^ 7, 3) == 0x5BBB_0364_2A78_7C65)
        #expect(SplitMix64.key(1, 0, 1, 2) == 0xAD9D_8287_D836_2D69)
        #expect(SplitMix64.key(1, -1) == 0x4CFA_8BEA_B9C1_1A44)
    }

    @Test func drawsStayInTheirRanges() {
        var r = SplitMix64(seed: 3)
        for _ in 0..<10_000 {
            let u = r.uniform()
            #expect(u >= 0 && u < 1)
            let v = r.below(7)
            #expect(v >= 0 && v < 7)
        }
    }
}
