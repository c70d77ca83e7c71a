import CBLAS

// Which OpenBLAS kernels ("core") suit this CPU. Debian 12's OpenBLAS 0.3.21
// picks its kernels from the CPU model when it loads and falls back to its
// generic Prescott kernels on CPUs newer than it (seen: Intel family 6 model
// 207, 22 GFLOP/s per thread instead of ~110 with SkylakeX). The decision here
// is a pure function of (core OpenBLAS chose, CPU features, cores in the build,
// the user's OPENBLAS_CORETYPE), so it is tested on a table of cases;
// `BLASKernelSelection` (BLASSelection.swift) applies it at process start.

/// Instruction-set level of a CPU or of an OpenBLAS core's kernels.
public enum ISALevel: Int, Comparable, Sendable, CustomStringConvertible {
    case sse = 1, avx = 2, avx2 = 3, avx512 = 4

    public static func < (a: ISALevel, b: ISALevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .sse: "SSE"
        case .avx: "AVX"
        case .avx2: "AVX2+FMA"
        case .avx512: "AVX-512"
        }
    }
}

/// What CPUID and XGETBV say about this CPU (only what the choice needs).
public struct CPUFeatures: Equatable, Sendable, CustomStringConvertible {
    public enum Vendor: String, Sendable { case intel = "GenuineIntel", amd = "AuthenticAMD", other }
    public var vendor: Vendor
    public var family: Int
    public var model: Int
    public var avx = false, avx2 = false, fma = false
    public var avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512cd = false
    public var avx512bf16 = false
    /// The OS saves the YMM state (XCR0 bits 1-2) and the ZMM/opmask state (bits 5-7).
    public var osAVX = false, osAVX512 = false

    public init(vendor: Vendor, family: Int, model: Int) {
        self.vendor = vendor
        self.family = family
        self.model = model
    }

    /// The highest level whose instructions the CPU has and the OS enables.
    public var level: ISALevel {
        if osAVX512 && osAVX && avx512f && avx512bw && avx512dq && avx512vl && avx512cd && avx2 && fma { return .avx512 }
        if osAVX && avx2 && fma && avx { return .avx2 }
        if osAVX && avx { return .avx }
        return .sse
    }

    public var description: String {
        "\(vendor == .other ? "unknown vendor" : vendor.rawValue) family \(family) model \(model), \(level)"
            + (level == .avx512 && avx512bf16 ? " (BF16)" : "")
    }

    /// This machine's CPU (x86-64; elsewhere an empty description at SSE level).
    public static func detect() -> CPUFeatures {
        var r: [UInt32] = [0, 0, 0, 0]
        func cpuid(_ leaf: UInt32, _ sub: UInt32 = 0) {
            r.withUnsafeMutableBufferPointer { mancs_cpuid(leaf, sub, $0.baseAddress) }
        }
        cpuid(0)
        let maxLeaf = r[0]
        var vendorBytes: [UInt8] = []
        for reg in [r[1], r[3], r[2]] { for i in 0..<4 { vendorBytes.append(UInt8((reg >> (8 * UInt32(i))) & 0xFF)) } }
        let vendorString = String(decoding: vendorBytes, as: UTF8.self)
        cpuid(1)
        let eax = Int(r[0]), ecx = r[2]
        let baseFamily = (eax >> 8) & 0xF, baseModel = (eax >> 4) & 0xF
        let family = baseFamily == 0xF ? baseFamily + ((eax >> 20) & 0xFF) : baseFamily
        let model = (baseFamily == 0x6 || baseFamily == 0xF) ? baseModel | (((eax >> 16) & 0xF) << 4) : baseModel
        var f = CPUFeatures(vendor: Vendor(rawValue: vendorString) ?? .other, family: family, model: model)
        f.fma = ecx & (1 << 12) != 0
        f.avx = ecx & (1 << 28) != 0
        let xcr0 = mancs_xgetbv0()
        f.osAVX = xcr0 & 0x6 == 0x6
        f.osAVX512 = xcr0 & 0xE0 == 0xE0
        if maxLeaf >= 7 {
            cpuid(7, 0)
            let ebx = r[1]
            f.avx2 = ebx & (1 << 5) != 0
            f.avx512f = ebx & (1 << 16) != 0
            f.avx512dq = ebx & (1 << 17) != 0
            f.avx512cd = ebx & (1 << 28) != 0
            f.avx512bw = ebx & (1 << 30) != 0
            f.avx512vl = ebx & (1 << 31) != 0
            cpuid(7, 1)
            f.avx512bf16 = r[0] & (1 << 5) != 0
        }
        return f
    }
}

/// OpenBLAS core names (as `openblas_get_corename()` spells them) by the level of
/// their single-precision kernels.
public enum BLASCoreTable {
    static let levels: [String: ISALevel] = [
        "katmai": .sse, "coppermine": .sse, "northwood": .sse, "prescott": .sse, "banias": .sse, "atom": .sse,
        "core2": .sse, "penryn": .sse, "dunnington": .sse, "nehalem": .sse, "athlon": .sse, "opteron": .sse,
        "opteron_sse3": .sse, "barcelona": .sse, "nano": .sse, "bobcat": .sse,
        "sandybridge": .avx, "bulldozer": .avx, "piledriver": .avx, "steamroller": .avx,
        "haswell": .avx2, "excavator": .avx2, "zen": .avx2,
        "skylakex": .avx512, "cooperlake": .avx512, "sapphirerapids": .avx512,
    ]

    /// The level of a core's kernels; nil for a name this table does not know.
    public static func level(of core: String) -> ISALevel? { levels[core.lowercased()] }

    /// Cores to try for a CPU, best first (OPENBLAS_CORETYPE spellings): SkylakeX
    /// for AVX-512, the Zen cores on AMD and Haswell elsewhere for AVX2.
    public static func candidates(for cpu: CPUFeatures) -> [String] {
        let avx2 = cpu.vendor == .amd ? ["Zen", "Haswell"] : ["Haswell", "Zen"]
        switch cpu.level {
        case .avx512: return ["SkylakeX", "Cooperlake"] + avx2
        case .avx2: return avx2
        case .avx: return cpu.vendor == .amd ? ["Bulldozer", "Sandybridge"] : ["Sandybridge", "Bulldozer"]
        case .sse: return []
        }
    }
}

/// Who chose the BLAS kernels this process runs.
public enum BLASCoreSource: String, Sendable {
    /// OpenBLAS's own detection, kept.
    case openblas
    /// The user's OPENBLAS_CORETYPE.
    case environment
    /// mancs, because OpenBLAS fell back to generic kernels.
    case mancs
}

/// What to do about the core OpenBLAS loaded with.
public enum BLASCoreDecision: Equatable, Sendable {
    /// Keep it; `note` says why when that is worth telling (nil otherwise).
    case keep(source: BLASCoreSource, note: String?)
    /// Restart with OPENBLAS_CORETYPE set to `core`.
    case select(core: String, reason: String)
}

/// The choice: keep what the user set; keep what OpenBLAS chose unless it fell
/// back to generic kernels (SSE or AVX level) on a CPU with AVX2 or AVX-512, in
/// which case take the best core of this build for the CPU's features.
/// `available(core)` says whether this OpenBLAS build has a core.
public func chooseBLASCore(current: String, cpu: CPUFeatures, userCoreType: String?,
                           available: (String) -> Bool) -> BLASCoreDecision {
    let cpuLevel = cpu.level
    let best = BLASCoreTable.candidates(for: cpu).first(where: available)
    if let user = userCoreType, !user.isEmpty {
        var note: String?
        if let best, let userLevel = BLASCoreTable.level(of: current), userLevel < cpuLevel,
           let bestLevel = BLASCoreTable.level(of: best), bestLevel > userLevel {
            note = "this CPU could run \(best) (\(bestLevel)) kernels instead of \(current) (\(userLevel)): "
                + "unset OPENBLAS_CORETYPE=\(user) to let mancs choose"
        }
        return .keep(source: .environment, note: note)
    }
    guard let currentLevel = BLASCoreTable.level(of: current) else {
        return .keep(source: .openblas, note: "OpenBLAS chose \(current), a core mancs does not know; kept")
    }
    guard currentLevel < .avx2, cpuLevel >= .avx2 else { return .keep(source: .openblas, note: nil) }
    guard let best, let bestLevel = BLASCoreTable.level(of: best), bestLevel > currentLevel else {
        return .keep(source: .openblas, note: "OpenBLAS fell back to \(current) on this CPU (\(cpu)) and this "
                     + "OpenBLAS build has no better core for it")
    }
    return .select(core: best, reason: "OpenBLAS fell back to its generic \(current) kernels on this CPU (\(cpu))")
}

/// The core OpenBLAS is running.
public var blasCoreName: String {
    guard let p = openblas_get_corename() else { return "unknown" }
    return String(cString: p)
}
