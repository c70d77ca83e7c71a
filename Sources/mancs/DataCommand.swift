import ArgumentParser

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Summarise (and verify) a re-ID dataset.")

    func run() throws {
        throw ValidationError("data: not implemented yet")
    }
}
