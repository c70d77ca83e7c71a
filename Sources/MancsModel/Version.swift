/// The version both executables print for `--version` (and a checkpoint's
/// reader can quote). Bumped by hand with each release of the project.
public let mancsVersion = "0.16.0"
