import Testing
@testable import Kernels

// The BLAS kernel choice is a pure function of (OpenBLAS's core, CPU features,
// cores in the build, the user's OPENBLAS_CORETYPE); these are its cases.

private func cpu(_ vendor: CPUFeatures.Vendor, family: Int = 6, model: Int = 207, _ level: ISALevel,
                 bf16: Bool = false, osAVX512: Bool = true) -> CPUFeatures {
    var f = CPUFeatures(vendor: vendor, family: family, model: model)
    if level >= .avx { f.avx = true; f.osAVX = true }
    if level >= .avx2 { f.avx2 = true; f.fma = true }
    if level >= .avx512 {
        f.avx512f = true; f.avx512bw = true; f.avx512dq = true; f.avx512vl = true; f.avx512cd = true
        f.osAVX512 = osAVX512
        f.avx512bf16 = bf16
    }
    return f
}

/// Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) has these cores, and no SapphireRapids.
private let debianBuild: Set<String> = ["prescott", "core2", "nehalem", "sandybridge", "haswell", "skylakex",
                                        "cooperlake", "zen", "bulldozer", "katmai", "atom", "barcelona"]
private func has(_ core: String) -> Bool { debianBuild.contains(core.lowercased()) }

struct BLASChoiceCase: CustomTestStringConvertible, Sendable {
    var name: String
    var current: String
    var cpu: CPUFeatures
    var user: String?
    var available: Set<String>
    /// nil: keep; else the core to select.
    var expected: String?
    var testDescription: String { name }
}

private let cases: [BLASChoiceCase] = [
    .init(name: "Intel model 207 with AVX-512 on Prescott fallback -> SkylakeX", current: "Prescott",
          cpu: cpu(.intel, .avx512, bf16: true), user: nil, available: debianBuild, expected: "SkylakeX"),
    .init(name: "Intel AVX2 on Prescott -> Haswell", current: "Prescott", cpu: cpu(.intel, model: 999, .avx2),
          user: nil, available: debianBuild, expected: "Haswell"),
    .init(name: "AMD AVX2 on Prescott -> Zen", current: "Prescott", cpu: cpu(.amd, family: 30, model: 1, .avx2),
          user: nil, available: debianBuild, expected: "Zen"),
    .init(name: "AMD AVX-512 on Katmai -> SkylakeX", current: "Katmai", cpu: cpu(.amd, family: 27, model: 0, .avx512),
          user: nil, available: debianBuild, expected: "SkylakeX"),
    .init(name: "Core2 fallback on AVX2 counts too", current: "Core2", cpu: cpu(.intel, .avx2), user: nil,
          available: debianBuild, expected: "Haswell"),
    .init(name: "Sandybridge (AVX) on an AVX-512 CPU -> SkylakeX", current: "Sandybridge", cpu: cpu(.intel, .avx512),
          user: nil, available: debianBuild, expected: "SkylakeX"),
    .init(name: "AVX-512 CPU whose OS does not save ZMM state -> Haswell", current: "Prescott",
          cpu: cpu(.intel, .avx512, osAVX512: false), user: nil, available: debianBuild, expected: "Haswell"),
    .init(name: "build without SkylakeX/Cooperlake -> Haswell", current: "Prescott", cpu: cpu(.intel, .avx512),
          user: nil, available: ["prescott", "haswell"], expected: "Haswell"),
    .init(name: "build without any better core -> keep", current: "Prescott", cpu: cpu(.intel, .avx512),
          user: nil, available: ["prescott"], expected: nil),
    .init(name: "OpenBLAS's own Cooperlake kept", current: "Cooperlake", cpu: cpu(.amd, family: 26, model: 2, .avx512, bf16: true),
          user: nil, available: debianBuild, expected: nil),
    .init(name: "OpenBLAS's own Haswell on AVX-512 kept (not a generic fallback)", current: "Haswell",
          cpu: cpu(.amd, family: 25, model: 17, .avx512), user: nil, available: debianBuild, expected: nil),
    .init(name: "SkylakeX kept", current: "SkylakeX", cpu: cpu(.intel, model: 85, .avx512), user: nil,
          available: debianBuild, expected: nil),
    .init(name: "Prescott on an SSE-only CPU kept", current: "Prescott", cpu: cpu(.intel, model: 15, .sse), user: nil,
          available: debianBuild, expected: nil),
    .init(name: "Sandybridge on an AVX-only CPU kept", current: "Sandybridge", cpu: cpu(.intel, model: 42, .avx), user: nil,
          available: debianBuild, expected: nil),
    .init(name: "user's OPENBLAS_CORETYPE=Prescott kept", current: "Prescott", cpu: cpu(.intel, .avx512), user: "Prescott",
          available: debianBuild, expected: nil),
    .init(name: "user's OPENBLAS_CORETYPE=Haswell on AVX-512 kept", current: "Haswell", cpu: cpu(.amd, family: 26, model: 2, .avx512),
          user: "Haswell", available: debianBuild, expected: nil),
    .init(name: "unknown core name kept", current: "Loongson", cpu: cpu(.intel, .avx512), user: nil,
          available: debianBuild, expected: nil),
]

@Test("BLAS core choice", arguments: cases)
func blasCoreChoice(_ c: BLASChoiceCase) {
    let decision = chooseBLASCore(current: c.current, cpu: c.cpu, userCoreType: c.user,
                                  available: { c.available.contains($0.lowercased()) })
    switch (decision, c.expected) {
    case (.select(let core, let reason), .some(let expected)):
        #expect(core == expected)
        #expect(reason.contains(c.current))
    case (.keep, nil): break
    default: Issue.record("\(c.name): got \(decision), expected \(c.expected ?? "keep")")
    }
}

@Test("a user's OPENBLAS_CORETYPE is kept, with a note when the CPU could run better kernels")
func userCoreTypeNote() {
    let avx512 = cpu(.amd, family: 26, model: 2, .avx512)
    let weak = chooseBLASCore(current: "Haswell", cpu: avx512, userCoreType: "Haswell", available: has)
    guard case .keep(.environment, let note?) = weak else { Issue.record("\(weak)"); return }
    #expect(note.contains("SkylakeX") && note.contains("OPENBLAS_CORETYPE=Haswell"))
    let best = chooseBLASCore(current: "SkylakeX", cpu: avx512, userCoreType: "SkylakeX", available: has)
    #expect(best == .keep(source: .environment, note: nil))
}

@Test("CPU level needs every AVX-512 subset the kernels use, and the OS's consent")
func cpuLevels() {
    #expect(cpu(.intel, .avx512).level == .avx512)
    var f = cpu(.intel, .avx512)
    f.avx512vl = false
    #expect(f.level == .avx2)
    #expect(cpu(.intel, .avx512, osAVX512: false).level == .avx2)
    var noOS = cpu(.intel, .avx2)
    noOS.osAVX = false
    #expect(noOS.level == .sse)
    #expect(BLASCoreTable.level(of: "prescott") == .sse)
    #expect(BLASCoreTable.level(of: "SkylakeX") == .avx512)
    #expect(BLASCoreTable.level(of: "Zen") == .avx2)
}

@Test("this machine: the loaded kernels pass the self-check, and the report names them")
func selfCheckOnThisMachine() {
    #expect(BLASKernelSelection.sgemmSelfCheck(using: openblasSgemm) == nil)
    let report = BLASKernelSelection.report
    #expect(report.core == blasCoreName)
    #expect(BLASCoreTable.level(of: report.core) != nil)
    #expect(report.summary.contains(report.core))
    // What CPUID says is consistent with the core OpenBLAS could run here.
    if let level = BLASCoreTable.level(of: report.core) { #expect(level <= max(report.cpu.level, .sse) || report.source == .environment) }
}
