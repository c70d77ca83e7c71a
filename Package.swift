// swift-tools-version:6.0
import PackageDescription

/// Hot numeric code (the kernels, the model, the training step) is built without
/// overflow and bounds traps in release builds; nothing that parses a file is.
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

// One target per concern; dependencies flow one way:
// system libraries <- Kernels <- MancsModel <- MancsTraining <- executables.
// Data, evaluation, distribution and checkpoints stand beside each other.
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
        .target(name: "Kernels", dependencies: ["CBLAS"], swiftSettings: fast),
        .target(name: "MancsModel", dependencies: ["Kernels", "HDF5Kit"], swiftSettings: fast),
        .target(name: "MancsTraining", dependencies: ["Kernels", "MancsModel", "HDF5Kit"], swiftSettings: fast),
        // Readers of files from elsewhere (images, listings, MAT-files, features
        // files) keep Swift's bounds and overflow checks: no -Ounchecked.
        .target(name: "ReIDData", dependencies: ["CTurboJPEG", "CZlib", "HDF5Kit"]),
        .target(name: "ReIDEval", dependencies: ["Kernels", "HDF5Kit", "MancsModel", "ReIDData", "Checkpoint", "Distributed"]),
        .target(name: "Distributed", dependencies: ["CMPI"]),
        .target(name: "Checkpoint", dependencies: ["HDF5Kit", "MancsModel", "Distributed"]),

        // MARK: Executables
        .executableTarget(name: "mancs", dependencies: [
            "Kernels", "MancsModel", "MancsTraining", "ReIDData", "ReIDEval", "Distributed", "Checkpoint", "HDF5Kit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mancs-dist", dependencies: [
            "Kernels", "MancsModel", "MancsTraining", "ReIDData", "ReIDEval", "Distributed", "Checkpoint", "HDF5Kit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["HDF5Kit", "CHDF5"], path: "Tests/TestSupport"),
        .testTarget(name: "HDF5KitTests", dependencies: ["HDF5Kit", "TestSupport", "CHDF5"]),
        .testTarget(name: "KernelTests", dependencies: ["Kernels", "TestSupport"]),
        .testTarget(name: "ModelTests", dependencies: ["MancsModel", "MancsTraining", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["MancsTraining", "TestSupport"]),
        .testTarget(name: "DataTests", dependencies: ["ReIDData", "TestSupport"]),
        .testTarget(name: "EvalTests", dependencies: ["ReIDEval", "Distributed", "TestSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "MancsModel", "TestSupport", "CHDF5"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "TestSupport"]),
    ]
)

