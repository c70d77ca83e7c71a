import Foundation

// `mancs plot`: the training curves of a run as one hand-written SVG — the
// losses against the step, and rank-1 / mAP of the evaluations against the step.

// MARK: - Reading metrics.jsonl

/// The points of a run's `metrics.jsonl`: objects with "kind":"train" (losses)
/// and "kind":"eval" (rates as fractions in 0...1, or percent).
public struct TrainingMetrics: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
    }
    /// loss, loss_rank, loss_cls, loss_att against step (series without any point are dropped).
    public var losses: [Series]
    /// rank1 and mAP in percent against step.
    public var rates: [Series]

    /// Parses JSON lines. A line that is not a JSON object is an error naming the
    /// line, except an unfinished last line (a run still writing).
    public static func parse(_ text: String, name: String = "metrics.jsonl") throws -> TrainingMetrics {
        var lossPoints: [String: [(Double, Double)]] = [:]
        var ratePoints: [String: [(Double, Double)]] = [:]
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let last = i == lines.count - 1
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                if last { continue }
                throw EvalError("\(name):\(i + 1): not a JSON object")
            }
            func number(_ k: String) -> Double? { (object[k] as? NSNumber)?.doubleValue }
            guard let kind = object["kind"] as? String, kind == "train" || kind == "eval" else { continue }
            guard let step = number("step") else { throw EvalError("\(name):\(i + 1): a \"\(kind)\" object without a numeric \"step\"") }
            if kind == "train" {
                for k in ["loss", "loss_rank", "loss_cls", "loss_att"] {
                    if let v = number(k), v.isFinite { lossPoints[k, default: []].append((step, v)) }
                }
            } else {
                for k in ["rank1", "mAP"] {
                    if let v = number(k), v.isFinite { ratePoints[k, default: []].append((step, v)) }
                }
            }
        }
        // Fractions (the eval JSON) are shown in percent; values above 1 already are.
        let fractions = ratePoints.values.joined().allSatisfy { $0.1 <= 1 }
        func series(_ keys: [String], _ d: [String: [(Double, Double)]], scale: Double = 1) -> [Series] {
            keys.compactMap { k in
                d[k].map { Series(name: k, points: $0.sorted { $0.0 < $1.0 }.map { (x: $0.0, y: $0.1 * scale) }) }
            }
        }
        return TrainingMetrics(losses: series(["loss", "loss_rank", "loss_cls", "loss_att"], lossPoints),
                               rates: series(["rank1", "mAP"], ratePoints, scale: fractions ? 100 : 1))
    }

    public static func read(_ path: String) throws -> TrainingMetrics {
        guard let data = FileManager.default.contents(atPath: path) else { throw EvalError("\(path): cannot read the file") }
        return try parse(String(decoding: data, as: UTF8.self), name: path)
    }
}

// MARK: - Markup

/// Text made safe inside HTML or SVG markup (the plot's title, `mancs visualize`'s index.html).
public func htmlEscape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

// MARK: - Axes

/// About `count` round tick values (1, 2, 5 x 10^k steps) covering lo...hi.
func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
    guard hi > lo else { return [lo] }
    let raw = (hi - lo) / Double(max(count, 1))
    let mag = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
    var ticks: [Double] = []
    var t = (lo / step).rounded(.down) * step
    while t <= hi + step * 1e-9 {
        if t >= lo - step * 1e-9 { ticks.append(abs(t) < step * 1e-9 ? 0 : t) }
        t += step
    }
    return ticks
}

func tickLabel(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e7 { return String(Int(v)) }
    return String(format: abs(v) >= 0.01 ? "%.2f" : "%.1e", v).replacingOccurrences(of: "0+$", with: "", options: .regularExpression)
}

/// A panel: a plot area at (x, y) with data ranges.
struct PlotPanel {
    let x: Double, y: Double, width: Double, height: Double
    let xRange: ClosedRange<Double>, yRange: ClosedRange<Double>
    func px(_ v: Double) -> Double { x + (v - xRange.lowerBound) / (xRange.upperBound - xRange.lowerBound) * width }
    func py(_ v: Double) -> Double { y + height - (v - yRange.lowerBound) / (yRange.upperBound - yRange.lowerBound) * height }
}

/// Data range padded so a single value or a flat line still spans the axis.
func paddedRange(_ values: [Double], floorZero: Bool) -> ClosedRange<Double> {
    var lo = values.min() ?? 0, hi = values.max() ?? 1
    if floorZero { lo = min(lo, 0) }
    if hi - lo < 1e-12 { lo -= 0.5; hi += 0.5 }
    let ticks = niceTicks(lo, hi)
    let step = ticks.count > 1 ? ticks[1] - ticks[0] : (hi - lo)
    return min(lo, ticks.first ?? lo)...max(hi, (ticks.last ?? hi) < hi ? (ticks.last ?? hi) + step : (ticks.last ?? hi))
}

// MARK: - SVG

/// Colours of the series, in order.
let plotColours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]

/// The SVG of the two panels. Every series with points is one `<polyline>`
/// (evaluations also get a dot per point, as there may be only a few).
public func trainingPlotSVG(_ m: TrainingMetrics, title: String) -> String {
    let width = 900.0, panelHeight = 300.0, left = 70.0, right = 150.0, top = 50.0, between = 80.0
    var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(top + 2 * panelHeight + between + 60))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="24" text-anchor="middle" font-size="16">\(htmlEscape(title))</text>

        """
    let allSteps = (m.losses + m.rates).flatMap { $0.points.map(\.x) }
    let xRange = paddedRange(allSteps.isEmpty ? [0, 1] : allSteps + [0], floorZero: true)
    func panel(_ series: [Series], _ y: Double, yLabel: String, fixed: ClosedRange<Double>?, dots: Bool, empty: String) {
        let values = series.flatMap { $0.points.map(\.y) }
        let yRange = fixed ?? paddedRange(values.isEmpty ? [0, 1] : values, floorZero: true)
        let p = PlotPanel(x: left, y: y, width: width - left - right, height: panelHeight, xRange: xRange, yRange: yRange)
        // Grid, ticks and labels.
        for t in niceTicks(yRange.lowerBound, yRange.upperBound) {
            let ty = p.py(t)
            svg += "<line x1=\"\(left)\" y1=\"\(ty)\" x2=\"\(left + p.width)\" y2=\"\(ty)\" stroke=\"#e0e0e0\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(ty + 4)\" text-anchor=\"end\">\(tickLabel(t))</text>\n"
        }
        for t in niceTicks(xRange.lowerBound, xRange.upperBound, count: 8) {
            let tx = p.px(t)
            svg += "<line x1=\"\(tx)\" y1=\"\(y + p.height)\" x2=\"\(tx)\" y2=\"\(y + p.height + 5)\" stroke=\"black\"/>"
            svg += "<text x=\"\(tx)\" y=\"\(y + p.height + 18)\" text-anchor=\"middle\">\(tickLabel(t))</text>\n"
        }
        svg += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(p.width)\" height=\"\(p.height)\" fill=\"none\" stroke=\"black\"/>\n"
        svg += "<text x=\"\(left + p.width / 2)\" y=\"\(y + p.height + 36)\" text-anchor=\"middle\">step</text>\n"
        svg += "<text transform=\"translate(18,\(y + p.height / 2)) rotate(-90)\" text-anchor=\"middle\">\(yLabel)</text>\n"
        if series.isEmpty {
            svg += "<text x=\"\(left + p.width / 2)\" y=\"\(y + p.height / 2)\" text-anchor=\"middle\" fill=\"#888\">\(empty)</text>\n"
        }
        // Curves and legend.
        for (i, s) in series.enumerated() {
            let colour = plotColours[i % plotColours.count]
            let pts = s.points.map { String(format: "%.2f,%.2f", p.px($0.x), p.py($0.y)) }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\"\(pts)\"/>\n"
            if dots {
                for pt in s.points {
                    svg += "<circle cx=\(String(format: "\"%.2f\" cy=\"%.2f\"", p.px(pt.x), p.py(pt.y))) r=\"3\" fill=\"\(colour)\"/>"
                }
                svg += "\n"
            }
            let ly = y + 12 + Double(i) * 18
            svg += "<line x1=\"\(left + p.width + 12)\" y1=\"\(ly)\" x2=\"\(left + p.width + 36)\" y2=\"\(ly)\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
            svg += "<text x=\"\(left + p.width + 42)\" y=\"\(ly + 4)\">\(s.name)</text>\n"
        }
    }
    panel(m.losses, top, yLabel: "loss", fixed: nil, dots: false, empty: "no \"train\" records")
    panel(m.rates, top + panelHeight + between, yLabel: "percent", fixed: 0...100, dots: true, empty: "no \"eval\" records")
    svg += "</svg>\n"
    return svg
}

typealias Series = TrainingMetrics.Series
