import ArgumentParser

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Describe and verify a Mancs checkpoint.")

    func run() throws {
        throw ValidationError("inspect: not implemented yet")
    }
}
