import Foundation

/// Replicas must stay bit-identical (docs/method.md §6). This compares a checksum
/// of a buffer across ranks and names the ranks that differ from rank 0.
public enum ReplicaCheck {
    /// FNV-1a over the float bit patterns: any single-bit difference changes it.
    public static func checksum(_ buffer: UnsafeBufferPointer<Float>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in buffer {
            var bits = x.bitPattern
            for _ in 0..<4 {
                h ^= UInt64(bits & 0xff)
                h = h &* 0x0000_0100_0000_01b3
                bits >>= 8
            }
        }
        return h
    }

    /// Collective: throws on every rank when some rank's checksum differs from rank 0's.
    public static func verify(_ buffer: UnsafeBufferPointer<Float>, name: String, comm: Communicator) throws {
        let sums = try comm.allgather([checksum(buffer)])
        let bad = sums.indices.filter { sums[$0] != sums[0] }
        guard bad.isEmpty else {
            throw ReplicaMismatch(message: "replicas differ in \(name): rank(s) \(bad.map(String.init).joined(separator: ", ")) disagree with rank 0 "
                                  + "(checksums \(sums.map { String($0, radix: 16) }.joined(separator: " ")))")
        }
    }
}

public struct ReplicaMismatch: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
