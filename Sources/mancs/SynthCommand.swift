import ArgumentParser

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "synth", abstract: "Write a synthetic re-ID dataset in the Market-1501 layout.")

    func run() throws {
        throw ValidationError("synth: not implemented yet")
    }
}
