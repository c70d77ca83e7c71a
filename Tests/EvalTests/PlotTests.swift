import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import ReIDEval
import Testing
import TestSupport

@Suite("Training plot")
struct PlotTests {
    static let metrics = """
        {"kind":"train","step":10,"epoch":0,"loss":3.5,"loss_rank":1.0,"loss_cls":2.0,"loss_att":0.5,"lr":0.0003}
        {"kind":"train","step":20,"epoch":0,"loss":3.0,"loss_rank":0.9,"loss_cls":1.7,"loss_att":0.4}
        {"kind":"eval","step":20,"epoch":1,"rank1":0.25,"mAP":0.125,"mINP":0.05}
        {"kind":"info","message":"ignored"}
        {"kind":"train","step":30,"epoch":1,"loss":2.5,"loss_rank":0.8,"loss_cls":1.4,"loss_att":0.3}
        {"kind":"eval","step":30,"epoch":2,"rank1":0.5,"mAP":0.375,"mINP":0.1}

        """

    func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test("losses and rates: one polyline per series, legend, ticks, percent scale")
    func svgFromMetrics() throws {
        let m = try TrainingMetrics.parse(Self.metrics)
        #expect(m.losses.map(\.name) == ["loss", "loss_rank", "loss_cls", "loss_att"])
        #expect(m.losses.allSatisfy { $0.points.map(\.x) == [10, 20, 30] })
        #expect(m.rates.map(\.name) == ["rank1", "mAP"])
        #expect(m.rates[0].points.map(\.y) == [25, 50])  // fractions shown in percent
        let svg = trainingPlotSVG(m, title: "run")
        #expect(count("<polyline", in: svg) == 6)
        #expect(count("<circle", in: svg) == 4)
        for name in ["loss_rank", "loss_cls", "loss_att", "rank1", "mAP", ">step<", ">100<"] { #expect(svg.contains(name)) }
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        // The SVG parses as XML.
        let doc = try XMLDocument(xmlString: svg)
        #expect(doc.rootElement()?.name == "svg")
    }

    @Test("writing to a file through a run directory, with no eval records")
    func onlyTrainRecords() throws {
        let dir = SharedFiles.temporaryDirectory("mancs-plot")
        defer { try? FileManager.default.removeItem(at: dir) }
        let lines = Self.metrics.split(separator: "\n").filter { $0.contains("\"train\"") }.joined(separator: "\n")
        try lines.write(to: dir.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
        let m = try TrainingMetrics.read(dir.appendingPathComponent("metrics.jsonl").path)
        #expect(m.rates.isEmpty)
        let svg = trainingPlotSVG(m, title: "x")
        #expect(count("<polyline", in: svg) == 4)
        #expect(svg.contains("no \"eval\" records"))
    }

    @Test("a malformed line is an error naming it; an unfinished last line is skipped")
    func malformed() throws {
        #expect(throws: EvalError.self) { _ = try TrainingMetrics.parse("{\"kind\":\"train\",\"step\":1,\"loss\":1}\nnot json\n{}\n") }
        do { _ = try TrainingMetrics.parse("{\"kind\":\"train\",\"step\":1}\nnope\n{}\n", name: "m.jsonl") } catch {
            #expect("\(error)" == "m.jsonl:2: not a JSON object")
        }
        let m = try TrainingMetrics.parse("{\"kind\":\"train\",\"step\":1,\"loss\":1}\n{\"kind\":\"tra")
        #expect(m.losses.count == 1 && m.losses[0].points.count == 1)
        #expect(throws: EvalError.self) { _ = try TrainingMetrics.read("/nonexistent/metrics.jsonl") }
    }

    @Test("ticks are round numbers covering the range")
    func ticks() {
        #expect(niceTicks(0, 100) == [0, 20, 40, 60, 80, 100])
        #expect(niceTicks(0, 3.7) == [0, 1, 2, 3])
        #expect(niceTicks(0, 1.8) == [0, 0.5, 1, 1.5])
        #expect(niceTicks(0, 0.03).count >= 3)
    }
}
