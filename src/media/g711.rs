//! ITU-T G.711 mu-law and A-law: 256-entry decode tables built at compile time, and the encoders
//! (used by the capture generator and tests). Pure functions over slices: no I/O, no allocation.
//!
//! The tables are checked exhaustively against an independent implementation in the tests.

/// Decodes one mu-law code to a 16-bit linear sample.
const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mut t: i32 = (((u & 0x0F) as i32) << 3) + 0x84;
    t <<= ((u & 0x70) >> 4) as i32;
    if u & 0x80 != 0 {
        (0x84 - t) as i16
    } else {
        (t - 0x84) as i16
    }
}

/// Decodes one A-law code to a 16-bit linear sample.
const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t: i32 = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    if seg == 0 {
        t += 8;
    } else {
        t += 0x108;
        t <<= seg - 1;
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

/// mu-law code -> linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = build_table(false);
/// A-law code -> linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = build_table(true);

/// Decodes mu-law `codes` into `out` (appended). Reuses `out`'s capacity.
pub fn decode_ulaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ULAW_TO_LINEAR[c as usize]));
}

/// Decodes A-law `codes` into `out` (appended). Reuses `out`'s capacity.
pub fn decode_alaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ALAW_TO_LINEAR[c as usize]));
}

/// Encodes one linear sample to mu-law (G.711 with the usual 0x84 bias and 32635 clip).
pub fn encode_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let s = sample as i32;
    let sign: u8 = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.unsigned_abs().min(CLIP as u32) as i32 + BIAS;
    // Exponent: position of the highest set bit among bits 7..=14.
    let exponent = (31 - (magnitude as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

/// Encodes one linear sample to A-law.
pub fn encode_alaw(sample: i16) -> u8 {
    const SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = (sample as i32) >> 3; // 13-bit
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let segment = SEGMENT_END.iter().position(|&end| pcm <= end).unwrap_or(8);
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let mut code = (segment as u8) << 4;
    code |= if segment < 2 {
        ((pcm >> 1) & 0x0F) as u8
    } else {
        ((pcm >> segment) & 0x0F) as u8
    };
    code ^ mask
}

/// Encodes `samples` to mu-law into `out` (appended).
pub fn encode_ulaw_slice(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| encode_ulaw(s)));
}

/// Encodes `samples` to A-law into `out` (appended).
pub fn encode_alaw_slice(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| encode_alaw(s)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_codec_algorithms::{decode_alaw as ref_alaw, decode_ulaw as ref_ulaw};

    #[test]
    fn decode_tables_match_reference_exhaustively() {
        for code in 0..=255u8 {
            assert_eq!(
                ULAW_TO_LINEAR[code as usize],
                ref_ulaw(code),
                "mu-law {code:#04x}"
            );
            assert_eq!(
                ALAW_TO_LINEAR[code as usize],
                ref_alaw(code),
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ULAW_TO_LINEAR[0xFF], 0);
        assert_eq!(ULAW_TO_LINEAR[0x00], -32124);
        assert_eq!(ULAW_TO_LINEAR[0x80], 32124);
        assert_eq!(ALAW_TO_LINEAR[0xD5], 8);
        assert_eq!(ALAW_TO_LINEAR[0x55], -8);
        assert_eq!(ALAW_TO_LINEAR[0xAA], 32256);
        assert_eq!(encode_ulaw(0), 0xFF);
        assert_eq!(encode_alaw(0), 0xD5);
    }

    #[test]
    fn encode_inverts_decode_for_every_code() {
        for code in 0..=255u8 {
            // mu-law has two zeros (0x7F and 0xFF); the encoder picks 0xFF.
            if code != 0x7F {
                assert_eq!(
                    encode_ulaw(ULAW_TO_LINEAR[code as usize]),
                    code,
                    "mu {code:#04x}"
                );
            }
            assert_eq!(
                encode_alaw(ALAW_TO_LINEAR[code as usize]),
                code,
                "A {code:#04x}"
            );
        }
    }

    #[test]
    fn encode_picks_nearest_segment_for_all_samples() {
        // Quantisation error is bounded by half the step of the segment.
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ULAW_TO_LINEAR[encode_ulaw(s) as usize] as i32;
            let a = ALAW_TO_LINEAR[encode_alaw(s) as usize] as i32;
            let s = s as i32;
            assert!((u - s).abs() <= 1100, "mu {s} -> {u}");
            assert!((a - s).abs() <= 1100, "A {s} -> {a}");
        }
    }
}
