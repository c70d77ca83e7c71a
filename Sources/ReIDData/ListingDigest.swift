extension ReIDDataset {
    /// FNV-1a over every image's path, label and camera, split by split: ranks
    /// on different nodes compare it to be sure they train on the same listing.
    public var listingDigest: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for b in bytes { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01b3 }
        }
        func mix(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { mix($0) } }
        for split in [train, query, gallery] + (multiQuery.map { [$0] } ?? []) {
            mix(split.count)
            for image in split.images {
                mix(image.path.utf8); mix(image.pid); mix(image.camera)
            }
        }
        return h
    }
}
