// What a synthetic person looks like: the identity cues that stay fixed across cameras
// (clothing colours and patterns, carried items, build, hair and skin) and the per-image pose.

// MARK: - Colour

/// Linear-ish RGB in [0, 1] used while drawing.
struct SyntheticColor {
    var r: Float, g: Float, b: Float

    init(_ r: Float, _ g: Float, _ b: Float) { self.r = r; self.g = g; self.b = b }

    /// hue in [0, 1), saturation and value in [0, 1].
    init(hue: Float, saturation: Float, value: Float) {
        let h = (hue - hue.rounded(.down)) * 6
        let sector = Int(h) % 6
        let f = h - Float(Int(h))
        let p = value * (1 - saturation), q = value * (1 - saturation * f), t = value * (1 - saturation * (1 - f))
        switch sector {
        case 0: self.init(value, t, p)
        case 1: self.init(q, value, p)
        case 2: self.init(p, value, t)
        case 3: self.init(p, q, value)
        case 4: self.init(t, p, value)
        default: self.init(value, p, q)
        }
    }

    func scaled(_ s: Float) -> SyntheticColor { SyntheticColor(r * s, g * s, b * s) }
    func mixed(with other: SyntheticColor, _ t: Float) -> SyntheticColor {
        SyntheticColor(r + (other.r - r) * t, g + (other.g - g) * t, b + (other.b - b) * t)
    }
}

// MARK: - Identity

/// The fixed appearance of one identity. Everything a re-ID model should learn lives here.
struct SyntheticPerson {
    enum Pattern { case plain, stripes(period: Float), checks(period: Float) }
    enum Lower { case trousers, shorts, skirt }
    enum Hair { case short, long, hat(SyntheticColor) }
    enum Carried { case nothing, shoulderBag(onLeft: Bool), backpack }

    var upper: SyntheticColor
    var upperSecond: SyntheticColor          // the second colour of stripes / checks
    var pattern: Pattern
    var longSleeves: Bool
    var lower: SyntheticColor
    var lowerStyle: Lower
    var shoes: SyntheticColor
    var skin: SyntheticColor
    var hairColor: SyntheticColor
    var hair: Hair
    var carried: Carried
    var bagColor: SyntheticColor
    /// Height of the silhouette as a fraction of the crop height, before per-image scale jitter.
    var heightFraction: Float
    /// Width multiplier of torso and limbs (slim ... broad).
    var breadth: Float

    /// A random identity. Colours are drawn so that identities differ clearly at 128x64.
    static func random(using rng: inout SyntheticRNG) -> SyntheticPerson {
        let upper = clothingColor(&rng, neutralShare: 0.25)
        // The second colour contrasts with the first: another hue or a light/dark neutral.
        let upperSecond = rng.chance(0.5)
            ? clothingColor(&rng, neutralShare: 0)
            : (upper.r + upper.g + upper.b > 1.5 ? SyntheticColor(0.12, 0.12, 0.14) : SyntheticColor(0.92, 0.92, 0.9))
        let patternDraw = rng.unit()
        let pattern: Pattern = patternDraw < 0.5 ? .plain
            : patternDraw < 0.78 ? .stripes(period: rng.uniform(0.035, 0.06))
            : .checks(period: rng.uniform(0.05, 0.08))
        let lowerDraw = rng.unit()
        let lowerStyle: Lower = lowerDraw < 0.68 ? .trousers : lowerDraw < 0.86 ? .shorts : .skirt
        let skin = SyntheticColor(hue: rng.uniform(0.03, 0.09), saturation: rng.uniform(0.25, 0.6), value: rng.uniform(0.35, 0.95))
        let hairColor = rng.chance(0.6)
            ? SyntheticColor(hue: rng.uniform(0.04, 0.1), saturation: rng.uniform(0.3, 0.7), value: rng.uniform(0.08, 0.35))
            : SyntheticColor(hue: rng.uniform(0.07, 0.13), saturation: rng.uniform(0.2, 0.6), value: rng.uniform(0.4, 0.85))
        let hairDraw = rng.unit()
        let hair: Hair = hairDraw < 0.55 ? .short : hairDraw < 0.85 ? .long : .hat(clothingColor(&rng, neutralShare: 0.3))
        let carriedDraw = rng.unit()
        let carried: Carried = carriedDraw < 0.45 ? .nothing : carriedDraw < 0.72 ? .shoulderBag(onLeft: rng.chance(0.5)) : .backpack
        return SyntheticPerson(
            upper: upper, upperSecond: upperSecond, pattern: pattern, longSleeves: rng.chance(0.55),
            lower: clothingColor(&rng, neutralShare: 0.55), lowerStyle: lowerStyle,
            shoes: rng.chance(0.6) ? SyntheticColor(0.1, 0.1, 0.1).scaled(rng.uniform(0.5, 2)) : clothingColor(&rng, neutralShare: 0.5),
            skin: skin, hairColor: hairColor, hair: hair,
            carried: carried, bagColor: clothingColor(&rng, neutralShare: 0.4),
            heightFraction: rng.uniform(0.8, 0.93), breadth: rng.uniform(0.82, 1.22))
    }

    /// Saturated hues or neutrals (black, white, greys, denim, khaki).
    private static func clothingColor(_ rng: inout SyntheticRNG, neutralShare: Float) -> SyntheticColor {
        if rng.chance(neutralShare) {
            switch rng.int(0...4) {
            case 0: return SyntheticColor(0.08, 0.08, 0.09).scaled(rng.uniform(0.8, 1.6))                 // black
            case 1: return SyntheticColor(0.9, 0.9, 0.88).scaled(rng.uniform(0.9, 1.08))                  // white
            case 2: let v = rng.uniform(0.3, 0.65); return SyntheticColor(v, v, v * 1.02)                 // grey
            case 3: return SyntheticColor(hue: 0.6, saturation: rng.uniform(0.45, 0.7), value: rng.uniform(0.3, 0.6))   // denim
            default: return SyntheticColor(hue: 0.11, saturation: rng.uniform(0.3, 0.5), value: rng.uniform(0.55, 0.8)) // khaki
            }
        }
        return SyntheticColor(hue: rng.unit(), saturation: rng.uniform(0.55, 0.95), value: rng.uniform(0.45, 0.95))
    }
}

// MARK: - Pose

/// The per-image pose: which way the person faces and where the limbs swing.
/// Offsets are fractions of the person's height.
struct SyntheticPose {
    var facingAway: Bool
    var leftFoot: Float, rightFoot: Float     // horizontal offset of each foot from its hip
    var leftHand: Float, rightHand: Float     // horizontal offset of each hand from its shoulder line
    var lean: Float                           // horizontal shift of the head relative to the hips

    static func random(using rng: inout SyntheticRNG) -> SyntheticPose {
        let stride = rng.uniform(-0.07, 0.07)
        let swing = rng.uniform(-0.05, 0.05)
        return SyntheticPose(
            facingAway: rng.chance(0.4),
            leftFoot: -stride + rng.uniform(-0.015, 0.015), rightFoot: stride + rng.uniform(-0.015, 0.015),
            leftHand: swing + rng.uniform(-0.02, 0.02), rightHand: -swing + rng.uniform(-0.02, 0.02),
            lean: rng.uniform(-0.02, 0.02))
    }
}
