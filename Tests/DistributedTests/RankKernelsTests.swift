import Testing
import Distributed

@Test("a rank under half of rank 0's sgemm rate is named, with its host and kernels")
func slowRanksNamed() {
    let all = [RankKernels(rank: 0, host: "node1", core: "SkylakeX", sgemmGFLOPs: 200),
               RankKernels(rank: 1, host: "node1", core: "SkylakeX", sgemmGFLOPs: 101),
               RankKernels(rank: 2, host: "node2", core: "Prescott", sgemmGFLOPs: 41),
               RankKernels(rank: 3, host: "node2", core: "Haswell", sgemmGFLOPs: 99.9)]
    let slow = RankKernels.slow(all)
    #expect(slow.map(\.rank) == [2, 3])
    let warning = slow[0].slowWarning(comparedTo: all[0])
    #expect(warning.contains("rank 2 on node2") && warning.contains("Prescott") && warning.contains("200.0"))
    #expect(RankKernels.slow([all[0]]).isEmpty)
    #expect(RankKernels.slow([]).isEmpty)
}
