// swift-tools-version:6.0
import PackageDescription

/// Hot numeric code (the kernels, the model, the training step) is built without
/// overflow and bounds traps in release builds; nothing that parses a file is.
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

// One target per concern; dependencies flow one way (table: docs/architecture.md):
//   system libraries <- Kernels <- MancsModel <- MancsTraining <- executables
//   DeterministicRandom (the one generator) sits under everything that draws numbers.
//   ReIDData (files in), ReIDEval (features in, metrics out) and Distributed (MPI)
//   import none of each other, the model or checkpoints: evaluation knows nothing of
//   MPI, checkpoints or the network. Checkpoint = HDF5Kit + MancsModel's stores +
//   Distributed (rank 0 reads, every rank receives).
//   FeatureExtraction runs a network over a dataset (split over MPI ranks) for the
//   evaluation: the one library that joins MancsModel, ReIDData, ReIDEval,
//   Distributed and Checkpoint; both executables use it.
//   MancsSettings (the training run's settings) sits above the libraries whose
//   types its settings convert to, below mancs-dist.
let package = Package(
    name: "mancs",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mancs", targets: ["mancs"]),
        .executable(name: "mancs-dist", targets: ["mancs-dist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // MARK: C libraries (Debian packages), with shims for what Swift cannot import.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // MARK: Libraries
        .target(name: "HDF5Kit", dependencies: ["CHDF5"]),
        // The one random generator (SplitMix64): every seeded stream of the project.
        .target(name: "DeterministicRandom"),
        // mancs's own AVX-512 GEMM kernel (C with intrinsics, chosen at run time).
        .target(name: "CGEMMKernels", cSettings: [.unsafeFlags(["-O3"])]),  // also in debug builds: tests run it
        .target(name: "CWinogradKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Kernels", dependencies: ["CBLAS", "CGEMMKernels", "CWinogradKernels"], swiftSettings: fast),
        .target(name: "MancsModel", dependencies: ["Kernels", "HDF5Kit", "DeterministicRandom"], swiftSettings: fast),
        .target(name: "MancsTraining", dependencies: ["Kernels", "MancsModel", "HDF5Kit", "DeterministicRandom"], swiftSettings: fast),
        // Readers of files from elsewhere (images, listings, MAT-files, features
        // files, checkpoints, safetensors weights) keep Swift's bounds and
        // overflow checks: no -Ounchecked.
        .target(name: "ReIDData", dependencies: ["CTurboJPEG", "CZlib", "HDF5Kit", "DeterministicRandom"]),
        .target(name: "ReIDEval", dependencies: ["Kernels", "HDF5Kit", "DeterministicRandom"]),
        .target(name: "Distributed", dependencies: ["CMPI"]),
        .target(name: "Checkpoint", dependencies: ["HDF5Kit", "MancsModel", "Distributed", "WeightsFiles"]),
        .target(name: "WeightsFiles"),  // the safetensors format
        .target(name: "FeatureExtraction", dependencies: [
            "MancsModel", "ReIDData", "ReIDEval", "Distributed", "Checkpoint", "HDF5Kit", "DeterministicRandom",
        ]),
        // The training run's settings as typed values (model, losses, curriculum,
        // optimiser, data, run, evaluation): parsed from YAML and flags, checked,
        // converted to the libraries' own types in one place. Checked build.
        .target(name: "MancsSettings", dependencies: [
            "MancsModel", "MancsTraining", "ReIDData", "ReIDEval",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),

        // MARK: Executables
        .executableTarget(name: "mancs", dependencies: [
            "Kernels", "MancsModel", "MancsTraining", "ReIDData", "ReIDEval", "FeatureExtraction", "Distributed", "Checkpoint",
            "HDF5Kit", "DeterministicRandom",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mancs-dist", dependencies: [
            "MancsSettings", "Kernels", "MancsModel", "MancsTraining", "ReIDData", "ReIDEval", "FeatureExtraction", "Distributed",
            "Checkpoint", "HDF5Kit", "DeterministicRandom",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["HDF5Kit", "CHDF5", "MancsModel", "DeterministicRandom"], path: "Tests/TestSupport"),
        .testTarget(name: "HDF5KitTests", dependencies: ["HDF5Kit", "TestSupport", "CHDF5"]),
        .testTarget(name: "DeterministicRandomTests", dependencies: ["DeterministicRandom"]),
        .testTarget(name: "KernelTests", dependencies: ["Kernels", "TestSupport"]),
        .testTarget(name: "ModelTests", dependencies: ["MancsModel", "MancsTraining", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["MancsTraining", "TestSupport"]),
        .testTarget(name: "DataTests", dependencies: ["ReIDData", "TestSupport"]),
        .testTarget(name: "EvalTests", dependencies: ["ReIDEval", "HDF5Kit", "TestSupport"]),
        .testTarget(name: "FeatureExtractionTests", dependencies: [
            "FeatureExtraction", "ReIDEval", "MancsModel", "ReIDData", "Checkpoint", "Distributed", "HDF5Kit", "CTurboJPEG",
            "TestSupport",
        ]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "MancsModel", "WeightsFiles", "TestSupport", "CHDF5"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "TestSupport"]),
        .testTarget(name: "SettingsTests", dependencies: ["MancsSettings", .product(name: "Yams", package: "Yams")]),
    ]
)

