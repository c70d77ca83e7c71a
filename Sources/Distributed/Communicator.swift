import CMPI
import Foundation
import Synchronization

/// A failed MPI call, with MPI's own description of the failure.
public struct MPIError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Turns an MPI return code into a Swift error (the world communicator uses
/// MPI_ERRORS_RETURN, so failures come back here instead of aborting).
@inline(__always)
func check(_ rc: Int32, _ what: @autoclosure () -> String) throws {
    guard rc != 0 else { return }  // MPI_SUCCESS
    var buf = [CChar](repeating: 0, count: 512)  // >= MPI_MAX_ERROR_STRING
    var len: Int32 = 0
    MPI_Error_string(rc, &buf, &len)
    throw MPIError("MPI \(what()) failed: \(cText(buf)) (code \(rc))")
}

/// Text of a NUL-terminated C buffer.
func cText(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The one world communicator of this process. MPI is initialised on first use
/// (`Communicator.world()`), exactly once; a binary started without `mpirun`
/// is a world of one.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// The processor (host) name MPI reports for this rank.
    public let hostname: String
    /// The thread support MPI granted (MPI_THREAD_MULTIPLE is requested so a
    /// gradient reducer may run its collectives on a thread of its own).
    public let threadMultiple: Bool
    let comm: MPI_Comm

    public var isRoot: Bool { rank == 0 }

    private init() throws {
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, mancs_mpi_thread_multiple(), &provided), "init")
        comm = mancs_comm_world()
        try check(MPI_Comm_set_errhandler(comm, mancs_mpi_errors_return()), "set error handler")
        var r: Int32 = 0, s: Int32 = 0
        try check(MPI_Comm_rank(comm, &r), "rank")
        try check(MPI_Comm_size(comm, &s), "size")
        rank = Int(r); size = Int(s)
        var name = [CChar](repeating: 0, count: 1024)  // >= MPI_MAX_PROCESSOR_NAME
        var len: Int32 = 0
        try check(MPI_Get_processor_name(&name, &len), "processor name")
        hostname = cText(name)
        threadMultiple = provided >= mancs_mpi_thread_multiple()
    }

    private init(duplicating parent: Communicator) throws {
        var dup: MPI_Comm? = nil
        try check(MPI_Comm_dup(parent.comm, &dup), "communicator duplicate")
        comm = dup!
        try check(MPI_Comm_set_errhandler(comm, mancs_mpi_errors_return()), "set error handler")
        rank = parent.rank; size = parent.size; hostname = parent.hostname; threadMultiple = parent.threadMultiple
    }

    /// The same ranks in a communicator of their own (collective): its collectives
    /// never match another communicator's, so they may run while, e.g., a gradient
    /// reducer's non-blocking allreduces on this one are in flight.
    public func duplicate() throws -> Communicator { try Communicator(duplicating: self) }

    private static let shared = Mutex<Communicator?>(nil)

    /// The world communicator; initialises MPI on the first call.
    public static func world() throws -> Communicator {
        try shared.withLock { cached in
            if let c = cached { return c }
            var initialized: Int32 = 0
            MPI_Initialized(&initialized)
            guard initialized == 0 else { throw MPIError("MPI was initialised outside Communicator.world()") }
            let c = try Communicator()
            cached = c
            return c
        }
    }

    // MARK: Lifetime

    /// Ends MPI (once; later calls do nothing). No MPI call may follow.
    public func finalize() {
        var done: Int32 = 0
        MPI_Finalized(&done)
        if done == 0 { MPI_Finalize() }
    }

    /// Ends every rank of the job with this exit code (use when one rank cannot go on).
    public func abort(code: Int32) -> Never {
        MPI_Abort(comm, code)
        exit(code)  // not reached
    }

    public func barrier() throws { try check(MPI_Barrier(comm), "barrier") }

    // MARK: Broadcast

    private func bcast(_ p: UnsafeMutableRawPointer?, _ count: Int, _ type: MPI_Datatype, root: Int, _ what: String) throws {
        precondition(count <= Int(Int32.max), "broadcast of \(count) elements: too many for one MPI call")
        guard count > 0 else { return }
        try check(MPI_Bcast(p, Int32(count), type, Int32(root), comm), "broadcast of \(what)")
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int = 0) throws {
        try bcast(buffer.baseAddress, buffer.count, mancs_mpi_float(), root: root, "\(buffer.count) floats")
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Int64>, root: Int = 0) throws {
        try bcast(buffer.baseAddress, buffer.count, mancs_mpi_int64(), root: root, "\(buffer.count) int64")
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<UInt8>, root: Int = 0) throws {
        try bcast(buffer.baseAddress, buffer.count, mancs_mpi_byte(), root: root, "\(buffer.count) bytes")
    }

    /// Broadcasts an array in place (every rank must pass the same count).
    public func broadcast<T: MPIElement>(_ array: inout [T], root: Int = 0) throws {
        let n = array.count
        try array.withUnsafeMutableBytes { try bcast($0.baseAddress, n, T.mpiType, root: root, "\(n) values") }
    }

    /// Broadcasts a blob of any size: the root's `data` is returned on every rank
    /// (the others' argument is ignored). The size goes first.
    public func broadcast(data: Data, root: Int = 0) throws -> Data {
        var size = [Int64(rank == root ? data.count : 0)]
        try broadcast(&size, root: root)
        var bytes = rank == root ? [UInt8](data) : [UInt8](repeating: 0, count: Int(size[0]))
        try bytes.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
        return Data(bytes)
    }

    // MARK: Allreduce

    private func allreduce(_ p: UnsafeMutableRawPointer?, _ count: Int, _ type: MPI_Datatype, _ op: MPI_Op, _ what: String) throws {
        precondition(count <= Int(Int32.max), "allreduce of \(count) elements: too many for one MPI call")
        guard count > 0 else { return }
        try check(MPI_Allreduce(mancs_mpi_in_place(), p, Int32(count), type, op, comm), "allreduce (\(what))")
    }

    /// In-place sum over ranks.
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try allreduce(buffer.baseAddress, buffer.count, mancs_mpi_float(), mancs_mpi_sum(), "sum of \(buffer.count) floats")
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        try allreduce(buffer.baseAddress, buffer.count, mancs_mpi_double(), mancs_mpi_sum(), "sum of \(buffer.count) doubles")
    }

    /// In-place sum of an array (Float, Double, Int64).
    public func allreduceSum<T: MPIElement>(_ array: inout [T]) throws {
        let n = array.count
        try array.withUnsafeMutableBytes { try allreduce($0.baseAddress, n, T.mpiType, mancs_mpi_sum(), "sum") }
    }

    public func allreduceMax<T: MPIElement>(_ array: inout [T]) throws {
        let n = array.count
        try array.withUnsafeMutableBytes { try allreduce($0.baseAddress, n, T.mpiType, mancs_mpi_max(), "max") }
    }

    public func allreduceMin<T: MPIElement>(_ array: inout [T]) throws {
        let n = array.count
        try array.withUnsafeMutableBytes { try allreduce($0.baseAddress, n, T.mpiType, mancs_mpi_min(), "min") }
    }

    public func allreduceSum(_ value: Double) throws -> Double { var a = [value]; try allreduceSum(&a); return a[0] }
    public func allreduceMax(_ value: Int64) throws -> Int64 { var a = [value]; try allreduceMax(&a); return a[0] }
    public func allreduceMin(_ value: Int64) throws -> Int64 { var a = [value]; try allreduceMin(&a); return a[0] }
    public func allreduceMax(_ value: Double) throws -> Double { var a = [value]; try allreduceMax(&a); return a[0] }
    public func allreduceMin(_ value: Double) throws -> Double { var a = [value]; try allreduceMin(&a); return a[0] }

    // MARK: Gather

    /// Every rank contributes `local` (the same count everywhere); returns the
    /// concatenation in rank order, on every rank.
    public func allgather<T: MPIElement>(_ local: [T]) throws -> [T] {
        var out = [T](repeating: T.zero, count: local.count * size)
        guard !local.isEmpty else { return out }
        try local.withUnsafeBytes { src in
            try out.withUnsafeMutableBytes { dst in
                try check(MPI_Allgather(src.baseAddress, Int32(local.count), T.mpiType,
                                        dst.baseAddress, Int32(local.count), T.mpiType, comm), "allgather")
            }
        }
        return out
    }

    /// Gathers blobs of any size to `root`: returns them in rank order there, nil elsewhere.
    public func gather(data: Data, root: Int = 0) throws -> [Data]? {
        let sizes = try allgather([Int64(data.count)])
        let counts = sizes.map { Int32($0) }
        var displs = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) { displs[i] = displs[i - 1] + counts[i - 1] }
        let total = Int(sizes.reduce(0, +))
        var out = [UInt8](repeating: 0, count: rank == root ? max(total, 1) : 1)
        let bytes = [UInt8](data)
        try bytes.withUnsafeBytes { src in
            try out.withUnsafeMutableBytes { dst in
                try check(MPI_Gatherv(src.baseAddress, Int32(bytes.count), mancs_mpi_byte(),
                                      dst.baseAddress, counts, displs, mancs_mpi_byte(), Int32(root), comm), "gather")
            }
        }
        guard rank == root else { return nil }
        return (0..<size).map { Data(out[Int(displs[$0])..<Int(displs[$0] + counts[$0])]) }
    }
}

/// Element types the communicator moves as arrays.
public protocol MPIElement {
    static var mpiType: MPI_Datatype { get }
    static var zero: Self { get }
}
extension Float: MPIElement { public static var mpiType: MPI_Datatype { mancs_mpi_float() } }
extension Double: MPIElement { public static var mpiType: MPI_Datatype { mancs_mpi_double() } }
extension Int64: MPIElement { public static var mpiType: MPI_Datatype { mancs_mpi_int64() } }
extension UInt64: MPIElement { public static var mpiType: MPI_Datatype { mancs_mpi_uint64() } }
extension UInt8: MPIElement { public static var mpiType: MPI_Datatype { mancs_mpi_byte() } }
