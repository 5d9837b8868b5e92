//! Narrowband telephone audio: G.711 companding, a test tone and a tone detector.
//!
//! G.711 (μ-law for PCMU, A-law for PCMA) is what a gateway passes between WebRTC and the
//! telephone network without transcoding, so these are the only codecs a back-end must
//! understand. The tone generator and the Goertzel detector let tests put a known signal
//! into a call and find it at the far end (echo, SIP bridge, conference mix).

use std::f64::consts::TAU;

use interlink_protocol::Codec;

/// A codec with the RTP payload type it has on one leg (WebRTC or SIP): what an SDP
/// negotiates and what a relay rewrites between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PayloadFormat {
    pub(crate) codec: Codec,
    pub(crate) payload_type: u8,
}

/// The sample rate of G.711 audio, in Hz.
pub const SAMPLE_RATE: u32 = 8000;

/// μ-law adds this before finding the segment, so that the segments line up on powers of two.
const ULAW_BIAS: u32 = 0x84;
/// The largest magnitude μ-law encodes without overflowing once the bias is added.
const ULAW_CLIP: u32 = 32635;

/// Encodes a 16-bit linear sample as G.711 μ-law (PCMU).
pub fn ulaw_encode(sample: i16) -> u8 {
    let sign: u32 = if sample < 0 { 0x80 } else { 0 };
    let magnitude = u32::from(sample.unsigned_abs()).min(ULAW_CLIP) + ULAW_BIAS;
    // The biased magnitude is in 0x84..=0x7FFF: bits 7 to 14 select one of eight segments.
    let exponent = (magnitude >> 7).ilog2();
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !low_byte(sign | (exponent << 4) | mantissa)
}

/// Decodes a G.711 μ-law (PCMU) byte to a 16-bit linear sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let code = !byte;
    let exponent = u32::from((code >> 4) & 0x07);
    let mantissa = u32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    signed(code & 0x80 != 0, magnitude)
}

/// Encodes a 16-bit linear sample as G.711 A-law (PCMA).
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13 bits; a negative value is coded by its one's complement, which is
    // why the encoder is symmetric between `x` and `!x` rather than `x` and `-x`.
    let linear = sample >> 3;
    let (mask, magnitude) = if linear >= 0 {
        (0xD5, linear.unsigned_abs())
    } else {
        (0x55, (!linear).unsigned_abs())
    };
    let magnitude = u32::from(magnitude);
    // Segment ends: 0x1F, 0x3F, 0x7F, …, 0xFFF; the magnitude is at most 0xFFF.
    let segment = if magnitude < 0x20 {
        0
    } else {
        magnitude.ilog2() - 4
    };
    let mantissa = if segment < 2 {
        (magnitude >> 1) & 0x0F
    } else {
        (magnitude >> segment) & 0x0F
    };
    low_byte((segment << 4) | mantissa) ^ mask
}

/// Decodes a G.711 A-law (PCMA) byte to a 16-bit linear sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let code = byte ^ 0x55;
    let mantissa = u32::from(code & 0x0F) << 4;
    let segment = u32::from((code >> 4) & 0x07);
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    // In A-law a set sign bit means positive.
    signed(code & 0x80 == 0, magnitude)
}

/// The low eight bits; every caller has already masked its value to them.
fn low_byte(value: u32) -> u8 {
    value.to_le_bytes()[0]
}

/// A decoded magnitude (at most 32256 for either law) with its sign.
fn signed(negative: bool, magnitude: u32) -> i16 {
    let magnitude = i16::try_from(magnitude).unwrap_or(i16::MAX);
    if negative { -magnitude } else { magnitude }
}

/// A sine tone at 8 kHz whose phase runs on across frames, so consecutive frames join
/// without clicks.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    /// Radians advanced per sample.
    step: f64,
    amplitude: f64,
    /// Current phase in radians, kept in `0..TAU`.
    phase: f64,
}

impl ToneGenerator {
    /// A tone of `freq_hz` with peak `amplitude` (in 16-bit sample units).
    pub fn new(freq_hz: f64, amplitude: i16) -> ToneGenerator {
        ToneGenerator {
            step: TAU * freq_hz / f64::from(SAMPLE_RATE),
            amplitude: f64::from(amplitude),
            phase: 0.0,
        }
    }

    /// The next `samples` samples of the tone.
    pub fn next_frame(&mut self, samples: usize) -> Vec<i16> {
        let mut frame = Vec::with_capacity(samples);
        for _ in 0..samples {
            frame.push(to_sample(self.amplitude * self.phase.sin()));
            self.phase = (self.phase + self.step) % TAU;
        }
        frame
    }
}

/// Rounds and clamps to the 16-bit sample range.
#[allow(clippy::cast_possible_truncation)] // clamped to the i16 range just before
fn to_sample(value: f64) -> i16 {
    value
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// The power of `samples` at `freq_hz` (Goertzel algorithm), normalised by the square of
/// the number of samples: a sine of peak amplitude `A` at that frequency gives about `A²/4`.
pub fn goertzel_power(samples: &[i16], freq_hz: f64, sample_rate: u32) -> f64 {
    if samples.is_empty() || sample_rate == 0 {
        return 0.0;
    }
    let coefficient = 2.0 * (TAU * freq_hz / f64::from(sample_rate)).cos();
    let (mut s1, mut s2) = (0.0_f64, 0.0_f64);
    for &sample in samples {
        let s0 = f64::from(sample) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    let n = samples.len() as f64;
    power / (n * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_code_points() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);

        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn ulaw_round_trip_error_is_within_half_a_step() {
        for sample in i16::MIN..=i16::MAX {
            let decoded = i32::from(ulaw_decode(ulaw_encode(sample)));
            let magnitude = i32::from(sample).abs();
            let error = (decoded - i32::from(sample)).abs();
            if magnitude <= 32635 {
                // A segment's step is 1/16 of its lower edge; decoding lands mid-step.
                assert!(
                    error * 32 <= magnitude + 0x84,
                    "μ-law {sample}: decoded {decoded}"
                );
            } else {
                assert!(error <= 1024, "μ-law {sample}: decoded {decoded}");
            }
        }
    }

    #[test]
    fn alaw_round_trip_error_is_within_half_a_step() {
        for sample in i16::MIN..=i16::MAX {
            let decoded = i32::from(alaw_decode(alaw_encode(sample)));
            let magnitude = i32::from(sample).abs();
            let error = (decoded - i32::from(sample)).abs();
            // Steps are 16 in the two lowest segments, then 1/16 of the segment's lower edge.
            assert!(
                error <= 16 || error * 32 <= magnitude + 32,
                "A-law {sample}: decoded {decoded}"
            );
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for byte in 0..=u8::MAX {
            // μ-law has two codes for zero; both decode to 0, which encodes as 0xFF.
            if byte != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(byte)), byte, "μ-law {byte:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "A-law {byte:#04x}");
        }
    }

    #[test]
    fn sign_symmetry() {
        for sample in 1..=i16::MAX {
            assert_eq!(ulaw_encode(-sample), ulaw_encode(sample) ^ 0x80);
        }
        for sample in 0..=i16::MAX {
            assert_eq!(alaw_encode(!sample), alaw_encode(sample) ^ 0x80);
        }
        for byte in 0..=u8::MAX {
            assert_eq!(ulaw_decode(byte ^ 0x80), -ulaw_decode(byte));
            assert_eq!(alaw_decode(byte ^ 0x80), -alaw_decode(byte));
        }
    }

    #[test]
    fn codes_are_monotonic() {
        let mut previous = i16::MIN;
        for sample in i16::MIN..=i16::MAX {
            let decoded = ulaw_decode(ulaw_encode(sample));
            assert!(decoded >= previous);
            previous = decoded;
        }
        let mut previous = i16::MIN;
        for sample in i16::MIN..=i16::MAX {
            let decoded = alaw_decode(alaw_encode(sample));
            assert!(decoded >= previous);
            previous = decoded;
        }
    }

    #[test]
    fn tone_phase_runs_on_across_frames() {
        let mut split = ToneGenerator::new(440.0, 8000);
        let mut joined = split.next_frame(80);
        joined.extend(split.next_frame(80));
        let whole = ToneGenerator::new(440.0, 8000).next_frame(160);
        assert_eq!(joined, whole);
        assert_eq!(whole[0], 0);
        let peak = whole.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((7900..=8000).contains(&peak), "peak {peak}");
    }

    #[test]
    fn goertzel_finds_the_tone() {
        let mut tone = ToneGenerator::new(440.0, 10_000);
        let frame = tone.next_frame(800);
        let at_440 = goertzel_power(&frame, 440.0, SAMPLE_RATE);
        let at_1000 = goertzel_power(&frame, 1000.0, SAMPLE_RATE);
        // A²/4 for a tone that falls on a whole number of cycles.
        assert!((at_440 - 25_000_000.0).abs() < 250_000.0, "power {at_440}");
        assert!(at_440 > 1000.0 * at_1000, "440: {at_440}, 1000: {at_1000}");
        assert_eq!(goertzel_power(&[], 440.0, SAMPLE_RATE), 0.0);
    }

    #[test]
    fn goertzel_finds_the_tone_through_g711() {
        let mut tone = ToneGenerator::new(1000.0, 8000);
        let frame = tone.next_frame(160);
        let ulaw: Vec<i16> = frame.iter().map(|&s| ulaw_decode(ulaw_encode(s))).collect();
        let alaw: Vec<i16> = frame.iter().map(|&s| alaw_decode(alaw_encode(s))).collect();
        for decoded in [ulaw, alaw] {
            let on = goertzel_power(&decoded, 1000.0, SAMPLE_RATE);
            let off = goertzel_power(&decoded, 440.0, SAMPLE_RATE);
            assert!(on > 100.0 * off, "on {on}, off {off}");
        }
    }
}
