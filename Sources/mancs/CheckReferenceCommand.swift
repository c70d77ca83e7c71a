import ArgumentParser

struct CheckReferenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-reference", abstract: "Compare the model against a PyTorch reference dump.")

    func run() throws {
        throw ValidationError("check-reference: not implemented yet")
    }
}
