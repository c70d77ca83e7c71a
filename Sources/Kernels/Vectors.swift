// Loads and stores of SIMD vectors at float pointers, for the loops the compiler
// leaves scalar (a write through one pointer, reads through others that might alias).
// `count` below the vector's width handles a loop's remainder with the same vector
// operations: the missing lanes load as 0 and are not stored.

/// The first `count` scalars at `p` (any alignment) as a vector, the other lanes 0.
@inlinable @inline(__always)
public func loadVector<V: SIMD>(_ p: UnsafePointer<V.Scalar>, count: Int = V.scalarCount, as _: V.Type = V.self) -> V {
    if count == V.scalarCount { return UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    var v = V()
    for i in 0..<count { v[i] = p[i] }
    return v
}

/// `loadVector` from a mutable pointer.
@inlinable @inline(__always)
public func loadVector<V: SIMD>(_ p: UnsafeMutablePointer<V.Scalar>, count: Int = V.scalarCount, as _: V.Type = V.self) -> V {
    loadVector(UnsafePointer(p), count: count)
}

/// Stores the first `count` lanes of `v` at `p` (any alignment).
@inlinable @inline(__always)
public func storeVector<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<V.Scalar>, count: Int = V.scalarCount) {
    if count == V.scalarCount { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self); return }
    for i in 0..<count { p[i] = v[i] }
}

/// Calls `body(start, n)` for 0..<count in runs of `width` (n = width), then once for
/// the rest (n < width) when count is not a multiple of it. With a literal width the
/// full runs pass a constant n, so once inlined their `loadVector`/`storeVector`
/// carry no remainder branch.
@inlinable @inline(__always)
public func forEachVectorRun(_ count: Int, width: Int, _ body: (_ start: Int, _ n: Int) -> Void) {
    var start = 0
    while start &+ width <= count {
        body(start, width)
        start &+= width
    }
    if start < count { body(start, count &- start) }
}
