import Distributed
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

// Without mpirun the process is a world of one: these tests check the
// single-rank behaviour. Multi-rank behaviour is tested for real with
// `mpirun -np 2` by Tests/integration/mpi_*.sh.
func waitForFlag() {
    for _ in 0..<200 where !StopSignal.stopRequested { usleep(5_000) }
}

@Suite(.serialized) struct DistributedTests {
    @Test func worldOfOne() throws {
        let comm = try Communicator.world()
        #expect(comm.rank == 0 && comm.size == 1 && comm.isRoot)
        #expect(!comm.hostname.isEmpty)
        #expect(try Communicator.world() === comm)  // MPI is initialised once

        var xs: [Float] = [1.5, -2, 3]
        try xs.withUnsafeMutableBufferPointer { try comm.allreduceSum($0) }
        #expect(xs == [1.5, -2, 3])
        #expect(try comm.allreduceMax(Int64(-4)) == -4)
        #expect(try comm.allreduceMin(2.5) == 2.5)
        let blob = Data((0..<1000).map { UInt8($0 % 251) })
        #expect(try comm.broadcast(data: blob) == blob)
        #expect(try comm.allgather([Int64(7), 8]) == [7, 8])
        #expect(try comm.gather(data: Data("abc".utf8)) == [Data("abc".utf8)])
        try comm.barrier()
    }

    @Test func reducerBucketsAreFixedAndAWorldOfOneChangesNothing() throws {
        let comm = try Communicator.world()
        let n = 1_000_003
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { g.deallocate() }
        var rng = SplitMix64(seed: 3)
        for i in g.indices { g[i] = rng.nextSigned() }
        let before = g.map(\.bitPattern)
        let reducer = try GradientReducer(comm: comm, gradients: g, bucketBytes: 1 << 20)
        #expect(reducer.buckets.count == 4)
        #expect(reducer.buckets.first == 0..<262_144)
        #expect(reducer.buckets.last == 786_432..<n)
        #expect(reducer.buckets.reduce(0) { $0 + $1.count } == n)
        reducer.beginStep()
        try reducer.gradientsReady(500_000..<n)
        try reducer.progress()
        try reducer.gradientsReady(0..<500_000)
        try reducer.finish()
        #expect(g.map(\.bitPattern) == before)
    }

    @Test func replicaChecksumSeesOneBit() throws {
        var a = [Float](repeating: 0.25, count: 4097)
        let h0 = a.withUnsafeBufferPointer { ReplicaCheck.checksum($0) }
        a[4000] = a[4000].nextUp
        let h1 = a.withUnsafeBufferPointer { ReplicaCheck.checksum($0) }
        #expect(h0 != h1)
        try a.withUnsafeBufferPointer { try ReplicaCheck.verify($0, name: "a", comm: try Communicator.world()) }
    }

    @Test func signalSetsTheStopFlag() throws {
        let comm = try Communicator.world()
        StopSignal.install()
        StopSignal.request(false)
        #expect(!StopSignal.stopRequested)
        #expect(try !StopSignal.anyRankRequestedStop(comm))
        // To the process (test threads block signals; some other thread takes it).
        kill(getpid(), SIGUSR1)
        waitForFlag()
        #expect(StopSignal.stopRequested)
        #expect(try StopSignal.anyRankRequestedStop(comm))
        StopSignal.request(false)
        kill(getpid(), SIGTERM)  // handled: the process keeps running
        waitForFlag()
        #expect(StopSignal.stopRequested)
        StopSignal.request(false)
    }
}
