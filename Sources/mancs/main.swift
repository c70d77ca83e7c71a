import ArgumentParser

@main
struct Mancs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mancs",
        abstract: "Tools for the Mancs person re-identification trainer.",
        subcommands: [])
}
