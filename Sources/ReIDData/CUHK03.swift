// CUHK03: filled in below.
func parseCUHK03(root: String, detected: Bool, protocol: CUHK03Protocol) throws -> RawDataset {
    throw DatasetError("\(root): CUHK03 is not supported yet")
}
