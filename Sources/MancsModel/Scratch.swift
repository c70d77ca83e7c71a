/// Buffers shared by every layer: three of the largest activation size (gradients
/// in backward; short-lived activations in forward), the conv workspace, and room
/// for the activations backward rebuilds.
struct Scratch {
    let g: [UnsafeMutablePointer<Float>]
    let workspace: UnsafeMutablePointer<Float>
    /// Holds one rebuilt activation (`NetworkBuilder.maxRecomputePerImage` per image).
    let recompute: UnsafeMutablePointer<Float>
}
