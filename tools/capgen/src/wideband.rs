//! The codecs capgen encodes a frame at a time (G.722, G.729) with the library's encoders;
//! G.711 is per sample in `Law`. Input is the packet's 8 kHz samples (G.722 upsamples them x2
//! by linear interpolation to its 16 kHz).

use anyhow::Result;
use silentmon::media::g722::G722Encoder;
use silentmon::media::g729::{G729Encoder, FRAME_SAMPLES};

/// A stateful encoder for one direction.
pub enum FrameEncoder {
    /// G.722 at 64 kbit/s.
    G722(G722Encoder),
    /// G.729, with Annex B VAD/DTX when asked.
    G729(G729Encoder),
}

impl FrameEncoder {
    /// G.722.
    pub fn g722() -> Result<Self> {
        Ok(FrameEncoder::G722(G722Encoder::new()?))
    }

    /// G.729 (`annex_b`: silence as SID frames or nothing).
    pub fn g729(annex_b: bool) -> Result<Self> {
        Ok(FrameEncoder::G729(G729Encoder::new(annex_b)?))
    }

    /// Encodes one packet's 8 kHz samples into `out` (nothing at all: a DTX packet).
    pub fn encode(&mut self, pcm8: &[i16], out: &mut Vec<u8>) {
        match self {
            FrameEncoder::G722(e) => {
                let mut wide = Vec::with_capacity(2 * pcm8.len());
                for (i, &a) in pcm8.iter().enumerate() {
                    let b = pcm8.get(i + 1).copied().unwrap_or(a);
                    wide.extend([a, ((i32::from(a) + i32::from(b)) / 2) as i16]);
                }
                e.encode(&wide, out);
            }
            FrameEncoder::G729(e) => {
                for frame in pcm8.chunks_exact(FRAME_SAMPLES) {
                    let frame: &[i16; FRAME_SAMPLES] = frame.try_into().expect("80 samples");
                    e.encode(frame, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_per_20_ms() {
        let pcm = vec![1000i16; 160];
        let mut out = Vec::new();
        FrameEncoder::g722().unwrap().encode(&pcm, &mut out);
        assert_eq!(out.len(), 160);
        out.clear();
        FrameEncoder::g729(false).unwrap().encode(&pcm, &mut out);
        assert_eq!(out.len(), 20);
    }
}
