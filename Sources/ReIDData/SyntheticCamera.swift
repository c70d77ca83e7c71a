// What a synthetic camera does to a picture: its scene (background texture and colours) and its
// imaging (light level, colour cast, contrast, blur, sensor noise). Cameras differ a lot from each
// other; this is the nuisance a re-ID model must learn to ignore.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct SyntheticCamera {
    enum Scene: CaseIterable { case wallAndFloor, pavement, foliage, shopfront }

    var scene: Scene
    var wall: SyntheticColor
    var floor: SyntheticColor
    var accent: SyntheticColor
    /// Where the ground starts, as a fraction of the image height.
    var horizon: Float
    /// Texture frequency multiplier (how busy the background is).
    var busyness: Float
    // Imaging
    var brightness: Float
    var cast: SyntheticColor                  // per-channel gain
    var contrast: Float
    var blurRadius: Int                       // box blur radius in output pixels
    var noise: Float                          // standard deviation of additive noise

    /// Camera `index` (0-based). Successive cameras cycle through the scene kinds so that any
    /// two cameras look different even for small camera counts. `lightLevel` and `toneLevel` in
    /// [0, 1) place the camera's brightness and wall tone within their ranges; the dataset spreads
    /// them evenly over the cameras so that every seed gives a similar spread (and difficulty).
    static func random(index: Int, lightLevel: Float, toneLevel: Float, using rng: inout SyntheticRNG) -> SyntheticCamera {
        let scenes = Scene.allCases
        let wallHue = rng.unit()
        return SyntheticCamera(
            scene: scenes[index % scenes.count],
            wall: SyntheticColor(hue: wallHue, saturation: rng.uniform(0.05, 0.25), value: 0.45 + 0.2 * toneLevel),
            floor: SyntheticColor(hue: rng.unit(), saturation: rng.uniform(0.03, 0.2), value: 0.35 + 0.2 * toneLevel + rng.uniform(0, 0.05)),
            accent: SyntheticColor(hue: wallHue + rng.uniform(0.2, 0.8), saturation: rng.uniform(0.15, 0.5), value: rng.uniform(0.35, 0.75)),
            horizon: rng.uniform(0.55, 0.8),
            busyness: rng.uniform(0.7, 1.6),
            brightness: 0.85 + 0.27 * lightLevel,
            cast: SyntheticColor(1 + 0.06 * rng.normal(), 1 + 0.06 * rng.normal(), 1 + 0.06 * rng.normal()),
            contrast: rng.uniform(0.85, 1.05),
            blurRadius: rng.int(0...1),
            noise: rng.uniform(0.01, 0.045))
    }

    // MARK: Scene

    /// Background colour at (x, y) in [0, 1] image coordinates; `shift` (per image, in [0, 1))
    /// moves the texture so that pictures from one camera are similar but not identical.
    func background(x: Float, y: Float, shift: Float) -> SyntheticColor {
        if y >= horizon, scene != .pavement {
            // Ground: bands that get wider towards the bottom (a cheap perspective).
            let depth = ((y - horizon) / (1 - horizon)).squareRoot()
            let band = synthFract(depth * 4 * busyness + shift)
            return band < 0.12 ? floor.scaled(0.8) : floor.scaled(0.9 + 0.2 * depth)
        }
        switch scene {
        case .wallAndFloor:
            let panel = synthFract((x + shift) * 3 * busyness)
            let shade = 0.88 + 0.2 * y
            return panel < 0.07 ? accent : wall.scaled(shade)
        case .pavement:
            let u = (x + shift) * 3 * busyness, v = y * 5 * busyness + shift
            if synthFract(u) < 0.06 || synthFract(v) < 0.05 { return accent.scaled(0.8) }
            let tile = SyntheticRNG.mix(UInt64(Int(floorf(u)) & 0xFFFF) << 16 | UInt64(Int(floorf(v)) & 0xFFFF))
            return floor.mixed(with: wall, Float(tile & 0xFF) / 255 * 0.5)
        case .foliage:
            let a = sinf((x + shift) * 17 * busyness) * sinf(y * 23 * busyness + shift * 5)
            let b = sinf((x * 41 + y * 13) * busyness + shift * 9)
            let t = min(max(0.5 + 0.3 * a + 0.15 * b, 0), 1)
            return wall.mixed(with: accent, t)
        case .shopfront:
            if y < 0.14 { return accent }
            let mullion = synthFract((x + shift) * 2 * busyness)
            if mullion < 0.08 || y > horizon - 0.05 { return wall.scaled(0.6) }
            return wall.mixed(with: SyntheticColor(0.85, 0.9, 0.95), 0.35 + 0.3 * y)
        }
    }

    // MARK: Imaging

    /// Light level, contrast and colour cast applied to a linear colour value.
    @inline(__always)
    func expose(_ value: Float, gain: Float, light: Float) -> Float {
        ((value - 0.5) * contrast + 0.5) * light * gain
    }
}

@inline(__always) func synthFract(_ v: Float) -> Float { v - floorf(v) }
