
/// Owns the raw allocations of one network (activations, saved statistics,
/// workspaces); everything is allocated once at build time and freed together.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private(set) var floatCount = 0

    func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        blocks.append(UnsafeMutableRawPointer(p))
        floatCount += n
        return p
    }

    func int32s(_ n: Int) -> UnsafeMutablePointer<Int32> {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    deinit { for b in blocks { b.deallocate() } }
}
