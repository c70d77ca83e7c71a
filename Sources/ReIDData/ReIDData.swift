// ReIDData: person re-identification data for the Mancs trainer.
//
// - Datasets by name (`loadDataset`): Market-1501, DukeMTMC-reID, CUHK03
//   (labeled / detected, new 767/700 or classic 1367/100 protocol), MSMT17
//   (V1 / V2, optionally train + val), and a generic list file of
//   `path pid camid split` lines.
// - JPEG decoding (`JPEGDecoder`, TurboJPEG) and PIL-like bilinear resizing.
// - Training augmentation and the evaluation transform (`ImageTransform`),
//   driven by a counter-based random generator (`SplitMix64`, DeterministicRandom).
// - The PK identity sampler (`PKSampler`) and the prefetching loader
//   (`BatchLoader`). See docs/data.md.
