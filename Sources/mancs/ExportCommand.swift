import ArgumentParser
import Checkpoint
import Foundation

/// `mancs export`: a checkpoint's weights as a safetensors file for PyTorch
/// (and for `mancs-dist --pretrained`, `mancs extract --checkpoint`).
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a checkpoint's weights as safetensors (PyTorch names and layouts).",
        discussion: """
            Writes every parameter and BatchNorm running statistic under its PyTorch name (those of \
            shared/reference/mancs_ref.py: backbone.* as torchvision's ResNet, attention.*, heads.*) and \
            layout (conv weights O x I x kH x kW), float32, plus each BatchNorm's num_batches_tracked, so \
            that `model.load_state_dict(safetensors.torch.load_file(F))` works unchanged. The architecture \
            is in the file's __metadata__: "config" holds the keyword arguments of the reference's \
            Config(...) as JSON (base_width, blocks, last_stride, num_classes, attention_stages, reduction, \
            embedding_dim, cls_hidden, height, width), with bn_eps, bn_momentum, global_step, format and \
            mancs_version beside it. The file is written atomically (temporary, fsync, read back, rename). \
            It is read back by `mancs extract/eval/visualize --checkpoint` and `mancs-dist --pretrained`. \
            See docs/evaluation.md.
            """)

    @Option(help: "Checkpoint or weights file (.h5) to export.") var checkpoint: String
    @Option(help: "Output safetensors file.") var out: String

    func run() throws {
        do {
            let s = try Checkpoint.exportSafetensors(from: URL(fileURLWithPath: checkpoint), to: URL(fileURLWithPath: out))
            let c = s.config
            print("export: \(s.tensors) tensors (\(s.parameterCount) parameters, \(s.bufferCount) running statistics), "
                  + "base width \(c.baseWidth), blocks \(c.blocks.map(String.init).joined(separator: ",")), "
                  + "attention stages \(c.attentionStages.map(String.init).joined(separator: ",")), \(c.numClasses) classes, "
                  + "\(c.height)x\(c.width), step \(s.globalStep), \(s.bytes) bytes -> \(out)")
        } catch {
            FileHandle.standardError.write(Data("mancs export: \("\(error)".split(whereSeparator: \.isNewline).joined(separator: " "))\n".utf8))
            throw ExitCode.failure
        }
    }
}
