// Drawing synthetic re-ID pictures in plain Swift: a supersampled RGB canvas that fills polygons and
// ellipses, the person figure built from those shapes, and the camera's imaging applied at the end.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Paint

/// How a shape is filled. Pattern coordinates are output pixels, anchored on the body part so
/// stripes move with the person.
enum SyntheticPaint {
    case solid(SyntheticColor)
    case stripes(SyntheticColor, SyntheticColor, period: Float, originY: Float)
    case checks(SyntheticColor, SyntheticColor, period: Float, originX: Float, originY: Float)

    @inline(__always)
    func color(x: Float, y: Float) -> SyntheticColor {
        switch self {
        case .solid(let c): return c
        case .stripes(let a, let b, let period, let originY):
            return synthFract((y - originY) / period) < 0.5 ? a : b
        case .checks(let a, let b, let period, let originX, let originY):
            let i = Int(floorf((x - originX) / period)) &+ Int(floorf((y - originY) / period))
            return i & 1 == 0 ? a : b
        }
    }
}

// MARK: - Canvas

/// An RGB float canvas `supersample` times larger than the output in each direction; shapes take
/// output-pixel coordinates and are anti-aliased by averaging down in `downsampled()`.
struct SyntheticCanvas {
    let outputWidth: Int, outputHeight: Int
    let supersample: Int
    let width: Int, height: Int
    var pixels: [Float]

    init(outputWidth: Int, outputHeight: Int, supersample: Int = 2) {
        self.outputWidth = outputWidth
        self.outputHeight = outputHeight
        self.supersample = supersample
        width = outputWidth * supersample
        height = outputHeight * supersample
        pixels = [Float](repeating: 0, count: width * height * 3)
    }

    /// Output-pixel coordinate of the centre of canvas pixel `i`.
    @inline(__always) private func centre(_ i: Int) -> Float { (Float(i) + 0.5) / Float(supersample) }

    /// Fills every canvas pixel with `color(x, y)`, x and y in [0, 1] image coordinates.
    mutating func fillAll(_ color: (Float, Float) -> SyntheticColor) {
        let w = width, h = height, ow = Float(outputWidth), oh = Float(outputHeight)
        for j in 0..<h {
            let y = centre(j) / oh
            for i in 0..<w {
                let c = color(centre(i) / ow, y)
                let k = (j &* w &+ i) &* 3
                pixels[k] = c.r; pixels[k &+ 1] = c.g; pixels[k &+ 2] = c.b
            }
        }
    }

    /// Fills a polygon (even-odd rule) given as output-pixel points, scanline by scanline.
    mutating func fillPolygon(_ points: [SIMD2<Float>], _ paint: SyntheticPaint) {
        guard points.count >= 3 else { return }
        let s = Float(supersample)
        var minY = Float.infinity, maxY = -Float.infinity
        for p in points { minY = min(minY, p.y); maxY = max(maxY, p.y) }
        let j0 = max(0, Int(floorf(minY * s))), j1 = min(height - 1, Int(ceilf(maxY * s)))
        guard j0 <= j1 else { return }
        var crossings: [Float] = []
        crossings.reserveCapacity(8)
        for j in j0...j1 {
            let y = centre(j)
            crossings.removeAll(keepingCapacity: true)
            var previous = points[points.count - 1]
            for p in points {
                if (p.y > y) != (previous.y > y) {
                    crossings.append(p.x + (y - p.y) * (previous.x - p.x) / (previous.y - p.y))
                }
                previous = p
            }
            crossings.sort()
            var k = 0
            while k + 1 < crossings.count {
                // Canvas pixels whose centres lie in [x0, x1).
                let i0 = max(0, Int(ceilf(crossings[k] * s - 0.5)))
                let i1 = min(width - 1, Int(ceilf(crossings[k + 1] * s - 0.5)) - 1)
                if i0 <= i1 { fillSpan(row: j, from: i0, to: i1, y: y, paint) }
                k += 2
            }
        }
    }

    /// Fills an axis-aligned ellipse; only the part above `clipBelow` (output y) is drawn.
    mutating func fillEllipse(center: SIMD2<Float>, radii: SIMD2<Float>, _ paint: SyntheticPaint,
                              clipBelow: Float = .infinity) {
        let s = Float(supersample)
        let bottom = min(center.y + radii.y, clipBelow)
        let j0 = max(0, Int(floorf((center.y - radii.y) * s))), j1 = min(height - 1, Int(ceilf(bottom * s)))
        guard j0 <= j1, radii.x > 0, radii.y > 0 else { return }
        for j in j0...j1 {
            let y = centre(j)
            guard y < bottom else { continue }
            let dy = (y - center.y) / radii.y
            guard dy * dy < 1 else { continue }
            let half = radii.x * (1 - dy * dy).squareRoot()
            let i0 = max(0, Int(ceilf((center.x - half) * s - 0.5)))
            let i1 = min(width - 1, Int(ceilf((center.x + half) * s - 0.5)) - 1)
            if i0 <= i1 { fillSpan(row: j, from: i0, to: i1, y: y, paint) }
        }
    }

    /// An axis-aligned rectangle in output pixels.
    mutating func fillRect(x0: Float, y0: Float, x1: Float, y1: Float, _ paint: SyntheticPaint) {
        fillPolygon([SIMD2(x0, y0), SIMD2(x1, y0), SIMD2(x1, y1), SIMD2(x0, y1)], paint)
    }

    @inline(__always)
    private mutating func fillSpan(row j: Int, from i0: Int, to i1: Int, y: Float, _ paint: SyntheticPaint) {
        let w = width, inverseScale = 1 / Float(supersample)
        pixels.withUnsafeMutableBufferPointer { buffer in
            for i in i0...i1 {
                let c = paint.color(x: (Float(i) + 0.5) * inverseScale, y: y)
                let k = (j &* w &+ i) &* 3
                buffer[k] = c.r; buffer[k &+ 1] = c.g; buffer[k &+ 2] = c.b
            }
        }
    }

    /// Box-averages the supersampled canvas to the output size.
    func downsampled() -> [Float] {
        let s = supersample, ow = outputWidth, w = width
        var out = [Float](repeating: 0, count: outputWidth * outputHeight * 3)
        let norm = 1 / Float(s * s)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for oy in 0..<outputHeight {
                    for ox in 0..<ow {
                        var r: Float = 0, g: Float = 0, b: Float = 0
                        for dy in 0..<s {
                            var k = ((oy &* s &+ dy) &* w &+ ox &* s) &* 3
                            for _ in 0..<s { r += src[k]; g += src[k &+ 1]; b += src[k &+ 2]; k &+= 3 }
                        }
                        let o = (oy &* ow &+ ox) &* 3
                        dst[o] = r * norm; dst[o &+ 1] = g * norm; dst[o &+ 2] = b * norm
                    }
                }
            }
        }
        return out
    }
}

// MARK: - Shot

/// One picture to render: what is in it, which camera took it, and the seed of its random draws.
struct SyntheticShot {
    enum Subject {
        case person(SyntheticPerson)     // a whole person (a real sample or a person-like distractor)
        case fragment(SyntheticPerson)   // a bad detection: a piece of a person (junk)
        case scenery                     // no person: background and objects (a non-person distractor)
    }
    var subject: Subject
    var camera: SyntheticCamera
    var seed: UInt64
}

enum SyntheticRenderer {
    /// Renders a shot to interleaved 8-bit RGB, `width * height * 3` bytes, deterministically.
    static func render(_ shot: SyntheticShot, width: Int, height: Int) -> [UInt8] {
        var rng = SyntheticRNG(seed: shot.seed)
        let camera = shot.camera
        let W = Float(width), H = Float(height)
        var canvas = SyntheticCanvas(outputWidth: width, outputHeight: height)

        // Scene: the camera's background, shifted per picture, and some clutter in front of it.
        let shift = rng.unit()
        canvas.fillAll { x, y in camera.background(x: x, y: y, shift: shift) }
        for _ in 0..<rng.int(0...1) { drawClutter(&canvas, camera: camera, rng: &rng) }

        switch shot.subject {
        case .person(let person):
            let u = H * min(person.heightFraction * rng.uniform(0.88, 1.05), 0.97)
            let top = (H - u) * rng.uniform(0.15, 0.85)
            let cx = W * (0.5 + rng.uniform(-0.12, 0.12))
            drawPerson(person, pose: .random(using: &rng), on: &canvas, centerX: cx, top: top, height: u)
            if rng.chance(0.3) { drawOccluder(&canvas, rng: &rng) }
        case .fragment(let person):
            // Far too large (a piece of the body) or far too small and off-centre.
            let u = rng.chance(0.5) ? H * rng.uniform(1.6, 2.6) : H * rng.uniform(0.3, 0.5)
            let top = rng.uniform(-u + H * 0.3, H * 0.7)
            let cx = W * rng.uniform(0.1, 0.9)
            drawPerson(person, pose: .random(using: &rng), on: &canvas, centerX: cx, top: top, height: u)
        case .scenery:
            for _ in 0..<rng.int(2...5) { drawClutter(&canvas, camera: camera, rng: &rng) }
        }

        var image = canvas.downsampled()
        applyCamera(camera, to: &image, width: width, height: height, rng: &rng)
        return image.map { UInt8(min(max($0, 0), 1) * 255 + 0.5) }
    }

    // MARK: Person

    /// Draws the figure with its feet near `top + height`; all proportions are fractions of `height`.
    static func drawPerson(_ p: SyntheticPerson, pose: SyntheticPose, on canvas: inout SyntheticCanvas,
                           centerX cx: Float, top: Float, height u: Float) {
        func Y(_ f: Float) -> Float { top + f * u }
        func X(_ f: Float) -> Float { cx + f * u }
        func pt(_ x: Float, _ y: Float) -> SIMD2<Float> { SIMD2(X(x), Y(y)) }
        let b = p.breadth
        let away = pose.facingAway
        let shoulderY: Float = 0.175, hipY: Float = 0.5, kneeY: Float = 0.72, ankleY: Float = 0.955
        let shoulder = 0.12 * b, hip = 0.1 * b
        let headX = pose.lean, headY: Float = 0.075

        let upperPaint: SyntheticPaint
        switch p.pattern {
        case .plain: upperPaint = .solid(p.upper)
        case .stripes(let period): upperPaint = .stripes(p.upper, p.upperSecond, period: period * u, originY: Y(shoulderY))
        case .checks(let period): upperPaint = .checks(p.upper, p.upperSecond, period: period * u, originX: cx, originY: Y(shoulderY))
        }
        let skin = SyntheticPaint.solid(away ? p.skin.scaled(0.9) : p.skin)
        let lower = SyntheticPaint.solid(p.lower)
        // Seen from behind, the person's left side is on the image's left.
        let bagSide: Float = { if case .shoulderBag(let left) = p.carried { return (left != away) ? -1 : 1 }; return 1 }()

        // Backpack seen from the front: its top shows behind the shoulders.
        if case .backpack = p.carried, !away {
            canvas.fillRect(x0: X(-0.085 * b), y0: Y(0.14), x1: X(0.085 * b), y1: Y(0.2), .solid(p.bagColor))
        }

        // Legs, then shoes.
        for (side, foot) in [(Float(-1), pose.leftFoot), (Float(1), pose.rightFoot)] {
            let hipX = side * 0.05 * b, footX = hipX + foot
            func along(_ t: Float, _ halfWidth: Float, _ sideSign: Float) -> SIMD2<Float> {
                let y = hipY + (ankleY - hipY) * t, x = hipX + (footX - hipX) * t
                return pt(x + sideSign * halfWidth, y)
            }
            let top = 0.05 * b, bottom = 0.03 * b
            let leg = [along(0, top, -1), along(0, top, 1), along(1, bottom, 1), along(1, bottom, -1)]
            switch p.lowerStyle {
            case .trousers:
                canvas.fillPolygon(leg, lower)
            case .shorts, .skirt:
                canvas.fillPolygon(leg, skin)
                if case .shorts = p.lowerStyle {
                    let t = (kneeY - 0.06 - hipY) / (ankleY - hipY), mid = top + (bottom - top) * t
                    canvas.fillPolygon([along(0, top, -1), along(0, top, 1), along(t, mid * 1.1, 1), along(t, mid * 1.1, -1)], lower)
                }
            }
            canvas.fillEllipse(center: pt(footX + side * 0.012, ankleY + 0.012), radii: SIMD2(0.042 * u, 0.022 * u), .solid(p.shoes))
        }

        // Torso with rounded shoulders; hips in the lower garment.
        canvas.fillPolygon([pt(-shoulder, shoulderY), pt(shoulder, shoulderY), pt(hip, hipY + 0.01), pt(-hip, hipY + 0.01)], upperPaint)
        for side in [Float(-1), 1] {
            canvas.fillEllipse(center: pt(side * (shoulder - 0.03 * b), shoulderY + 0.025), radii: SIMD2(0.035 * b * u, 0.03 * u), upperPaint)
        }
        if case .skirt = p.lowerStyle {
            canvas.fillPolygon([pt(-hip, hipY - 0.03), pt(hip, hipY - 0.03), pt(0.15 * b, kneeY - 0.01), pt(-0.15 * b, kneeY - 0.01)], lower)
        } else {
            canvas.fillPolygon([pt(-hip, hipY - 0.03), pt(hip, hipY - 0.03), pt(hip * 1.02, hipY + 0.06), pt(-hip * 1.02, hipY + 0.06)], lower)
        }

        // Backpack seen from behind covers the back.
        if case .backpack = p.carried, away {
            let pack = SyntheticPaint.solid(p.bagColor)
            canvas.fillRect(x0: X(-0.085 * b), y0: Y(0.2), x1: X(0.085 * b), y1: Y(0.43), pack)
            canvas.fillEllipse(center: pt(0, 0.2), radii: SIMD2(0.085 * b * u, 0.03 * u), pack)
            canvas.fillRect(x0: X(-0.06 * b), y0: Y(0.34), x1: X(0.06 * b), y1: Y(0.42), .solid(p.bagColor.scaled(0.7)))
        }

        // Arms: sleeves in the upper-body paint, hands (and forearms for short sleeves) in skin.
        for (side, hand) in [(Float(-1), pose.leftHand), (Float(1), pose.rightHand)] {
            let s0 = SIMD2<Float>(side * (shoulder - 0.015 * b), shoulderY + 0.02)
            let s1 = SIMD2<Float>(side * (shoulder + 0.012 * b) + hand, 0.49)
            func along(_ t: Float, _ halfWidth: Float, _ sideSign: Float) -> SIMD2<Float> {
                let c = s0 + (s1 - s0) * t
                return pt(c.x + sideSign * halfWidth, c.y)
            }
            let w0 = 0.032 * b, w1 = 0.024 * b
            let arm = [along(0, w0, -1), along(0, w0, 1), along(1, w1, 1), along(1, w1, -1)]
            if p.longSleeves {
                canvas.fillPolygon(arm, upperPaint)
            } else {
                canvas.fillPolygon(arm, skin)
                let wm = w0 + (w1 - w0) * 0.38
                canvas.fillPolygon([along(0, w0, -1), along(0, w0, 1), along(0.38, wm, 1), along(0.38, wm, -1)], upperPaint)
            }
            canvas.fillEllipse(center: pt(s1.x, s1.y + 0.012), radii: SIMD2(0.024 * u, 0.024 * u), skin)
        }

        // Carried items in front of the body.
        switch p.carried {
        case .nothing: break
        case .backpack:
            if !away {
                for side in [Float(-1), 1] {
                    canvas.fillPolygon([pt(side * 0.07 * b - 0.012, shoulderY - 0.005), pt(side * 0.07 * b + 0.012, shoulderY - 0.005),
                                        pt(side * 0.075 * b + 0.012, 0.37), pt(side * 0.075 * b - 0.012, 0.37)], .solid(p.bagColor.scaled(0.8)))
                }
            }
        case .shoulderBag:
            let strapFrom = pt(-bagSide * shoulder * 0.7, shoulderY - 0.005), strapTo = pt(bagSide * (hip + 0.04), 0.41)
            let d = 0.009 * u
            canvas.fillPolygon([strapFrom + SIMD2(0, -d), strapFrom + SIMD2(0, d), strapTo + SIMD2(0, d), strapTo + SIMD2(0, -d)],
                               .solid(p.bagColor.scaled(0.6)))
            let inner = bagSide * (hip - 0.005), outer = bagSide * (hip + 0.09 * b)
            canvas.fillPolygon([pt(inner, 0.4), pt(outer, 0.4), pt(outer + bagSide * 0.01, 0.56), pt(inner, 0.56)], .solid(p.bagColor))
        }

        // Neck and head; hair or hat on top.
        canvas.fillRect(x0: X(headX - 0.022), y0: Y(0.12), x1: X(headX + 0.022), y1: Y(shoulderY + 0.01), skin)
        let headCenter = pt(headX, headY), headRadii = SIMD2<Float>(0.052 * u, 0.066 * u)
        let hair = SyntheticPaint.solid(p.hairColor)
        if case .long = p.hair {
            let lengthY: Float = away ? 0.27 : 0.22
            if away {
                canvas.fillRect(x0: X(headX - 0.058), y0: Y(headY), x1: X(headX + 0.058), y1: Y(lengthY), hair)
            } else {
                canvas.fillRect(x0: X(headX - 0.062), y0: Y(headY), x1: X(headX - 0.035), y1: Y(lengthY), hair)
                canvas.fillRect(x0: X(headX + 0.035), y0: Y(headY), x1: X(headX + 0.062), y1: Y(lengthY), hair)
            }
        }
        canvas.fillEllipse(center: headCenter, radii: headRadii, away ? hair : skin)
        switch p.hair {
        case .short, .long:
            if !away {
                canvas.fillEllipse(center: pt(headX, headY - 0.012), radii: headRadii * SIMD2(1.06, 0.85), hair, clipBelow: Y(headY - 0.02))
            }
        case .hat(let color):
            canvas.fillEllipse(center: pt(headX, headY - 0.02), radii: headRadii * SIMD2(1.08, 0.8), .solid(color), clipBelow: Y(headY - 0.025))
            canvas.fillRect(x0: X(headX - 0.075), y0: Y(headY - 0.03), x1: X(headX + 0.075), y1: Y(headY - 0.018), .solid(color.scaled(0.85)))
        }
        if !away {
            // Eyes: two dark dots, enough to read as a face at full size.
            for side in [Float(-1), 1] {
                canvas.fillEllipse(center: pt(headX + side * 0.02, headY + 0.005), radii: SIMD2(0.007 * u, 0.006 * u), .solid(SyntheticColor(0.1, 0.08, 0.08)))
            }
        }
    }

    // MARK: Scene objects

    /// Background objects: poles, boxes, blobs in muted colours.
    static func drawClutter(_ canvas: inout SyntheticCanvas, camera: SyntheticCamera, rng: inout SyntheticRNG) {
        let W = Float(canvas.outputWidth), H = Float(canvas.outputHeight)
        let color = SyntheticColor(hue: rng.unit(), saturation: rng.uniform(0.05, 0.5), value: rng.uniform(0.15, 0.85))
            .mixed(with: camera.wall, rng.uniform(0, 0.5))
        switch rng.int(0...2) {
        case 0: // pole
            let x = rng.uniform(0, W), w = rng.uniform(0.03, 0.1) * W
            canvas.fillRect(x0: x, y0: 0, x1: x + w, y1: H * rng.uniform(0.7, 1), .solid(color))
        case 1: // box standing on the ground
            let x = rng.uniform(-0.2, 0.9) * W, w = rng.uniform(0.2, 0.5) * W, h = rng.uniform(0.1, 0.35) * H
            let base = H * rng.uniform(camera.horizon, 1)
            canvas.fillRect(x0: x, y0: base - h, x1: x + w, y1: base, .solid(color))
        default: // blob
            canvas.fillEllipse(center: SIMD2(rng.uniform(0, W), rng.uniform(0, H)),
                               radii: SIMD2(rng.uniform(0.08, 0.3) * W, rng.uniform(0.04, 0.15) * H), .solid(color))
        }
    }

    /// Something between the camera and the person: a box from below or a pillar from the side.
    static func drawOccluder(_ canvas: inout SyntheticCanvas, rng: inout SyntheticRNG) {
        let W = Float(canvas.outputWidth), H = Float(canvas.outputHeight)
        let a = SyntheticColor(hue: rng.unit(), saturation: rng.uniform(0.1, 0.8), value: rng.uniform(0.2, 0.9))
        let paint: SyntheticPaint = rng.chance(0.5) ? .solid(a)
            : .stripes(a, a.scaled(0.6), period: rng.uniform(3, 10), originY: 0)
        if rng.chance(0.5) {
            let y = H * rng.uniform(0.62, 0.85), x0 = rng.chance(0.5) ? 0 : rng.uniform(0, 0.4) * W
            canvas.fillRect(x0: x0, y0: y, x1: x0 + W * rng.uniform(0.5, 1), y1: H, paint)
        } else {
            let w = W * rng.uniform(0.15, 0.32)
            let x0 = rng.chance(0.5) ? -1 : W - w
            canvas.fillRect(x0: x0, y0: H * rng.uniform(0, 0.3), x1: x0 + w + 1, y1: H, paint)
        }
    }

    // MARK: Imaging

    /// Light (camera level, per-picture jitter, a side-to-side gradient), contrast, colour cast,
    /// blur and sensor noise, in that order.
    static func applyCamera(_ camera: SyntheticCamera, to image: inout [Float], width: Int, height: Int, rng: inout SyntheticRNG) {
        let light = camera.brightness * rng.uniform(0.85, 1.15)
        let slope = rng.uniform(-0.25, 0.25)
        let gain = SyntheticColor(camera.cast.r * (1 + 0.03 * rng.normal()), camera.cast.g * (1 + 0.03 * rng.normal()),
                                  camera.cast.b * (1 + 0.03 * rng.normal()))
        image.withUnsafeMutableBufferPointer { px in
            for y in 0..<height {
                for x in 0..<width {
                    let l = light * (1 + slope * (Float(x) / Float(width) - 0.5))
                    let k = (y &* width &+ x) &* 3
                    px[k] = camera.expose(px[k], gain: gain.r, light: l)
                    px[k &+ 1] = camera.expose(px[k &+ 1], gain: gain.g, light: l)
                    px[k &+ 2] = camera.expose(px[k &+ 2], gain: gain.b, light: l)
                }
            }
        }
        let radius = camera.blurRadius + (rng.chance(0.15) ? 1 : 0)
        if radius > 0 { boxBlur(&image, width: width, height: height, radius: radius) }
        let sigma = camera.noise
        for k in image.indices { image[k] += sigma * rng.normal() }
    }

    /// Separable box blur with edge clamping.
    static func boxBlur(_ image: inout [Float], width: Int, height: Int, radius: Int) {
        var temp = image
        let norm = 1 / Float(2 * radius + 1)
        image.withUnsafeMutableBufferPointer { img in
            temp.withUnsafeMutableBufferPointer { tmp in
                for y in 0..<height {            // horizontal: img -> tmp
                    for x in 0..<width {
                        for c in 0..<3 {
                            var sum: Float = 0
                            for d in -radius...radius {
                                let xx = min(max(x &+ d, 0), width &- 1)
                                sum += img[(y &* width &+ xx) &* 3 &+ c]
                            }
                            tmp[(y &* width &+ x) &* 3 &+ c] = sum * norm
                        }
                    }
                }
                for y in 0..<height {            // vertical: tmp -> img
                    for x in 0..<width {
                        for c in 0..<3 {
                            var sum: Float = 0
                            for d in -radius...radius {
                                let yy = min(max(y &+ d, 0), height &- 1)
                                sum += tmp[(yy &* width &+ x) &* 3 &+ c]
                            }
                            img[(y &* width &+ x) &* 3 &+ c] = sum * norm
                        }
                    }
                }
            }
        }
    }
}
