@testable import Distributed
import Foundation
import Testing

// The agreement's collective part runs under mpirun in
// Tests/integration/simcluster.sh; here: the world of one and the report text.
@Suite(.serialized) struct AgreementTests {
    struct Failure: Error, CustomStringConvertible { let description: String }

    @Test func worldOfOneRethrowsItsOwnError() throws {
        let comm = try Communicator.world()
        #expect(try comm.agreeing { 42 } == 42)
        #expect(throws: Failure.self) { try comm.agreeing { () throws -> Int in throw Failure(description: "x") } }
        try comm.agreeSame(digest: 7) { "never asked" }
    }

    @Test func onRootThenShareGivesTheResultOrRankZerosError() throws {
        // Several ranks: mpi_check.sh's checkpoint self-test and train_mpi.sh's unreadable --pretrained.
        let comm = try Communicator.world()
        #expect(try comm.onRootThenShare { Data("found".utf8) } == Data("found".utf8))
        let error = #expect(throws: RootFailure.self) {
            try comm.onRootThenShare { throw Failure(description: "/runs/a/step-00000005.h5: no such file") }
        }
        #expect(error?.description == "/runs/a/step-00000005.h5: no such file")
    }

    @Test func reportGroupsReasonsAndNamesHosts() {
        // Rank 0 fine, ranks 1 and 3 share a reason, rank 2 has its own.
        let lines = Communicator.failureReport(reasons: ["", "/data: missing", "/ckpt: bad", "/data: missing"],
                                               hosts: ["n1", "n2", "n3", "n4"])
        #expect(lines == ["rank 1 on n2, rank 3 on n4: /data: missing", "rank 2 on n3: /ckpt: bad"])
        // A reason every rank gave is said once, without rank names.
        #expect(Communicator.failureReport(reasons: ["same", "same"], hosts: ["a", "b"]) == ["same"])
    }

    @Test func cpuListsParse() {
        #expect(NodeShare.parseCPUList("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11])
        #expect(NodeShare.parseCPUList(" 1\n") == [1])
        #expect(NodeShare.parseCPUList("3-1") == nil)
        #expect(NodeShare.parseCPUList("") == nil)
        #expect(NodeShare.parseCPUList("a") == nil)
        #expect(NodeShare.allowedCPUs.map { !$0.isEmpty } ?? true)
    }

    @Test func affinityWarningWhenThreadsExceedCPUs() {
        let cpus = NodeShare.allowedCPUs?.count ?? 1
        #expect(NodeShare.affinityReport(rank: 0, host: "h", threads: cpus).warning == nil)
        let over = NodeShare.affinityReport(rank: 1, host: "h", threads: cpus + 1)
        #expect(over.warning?.contains("rank 1 on h may run on \(cpus) CPU(s)") == true)
        #expect(over.line.hasPrefix("rank 1 on h: CPU affinity "))
    }
}
