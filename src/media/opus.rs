//! Opus decoding (audiopus over libopus) to mono 16-bit PCM at 48 kHz, with libopus's packet
//! loss concealment for missing packets. Errors are values; nothing here touches I/O.

use audiopus::coder::Decoder;
use audiopus::packet::Packet;
use audiopus::{Channels, MutSignals, SampleRate};

/// Output rate of the decoder.
pub const OPUS_RATE: u32 = 48_000;
/// Largest frame Opus produces (120 ms at 48 kHz).
const MAX_FRAME: usize = 5760;

/// Opus decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libopus refused the packet or the state.
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
}

/// Errors of [`OpusDecoder::with_rate`].
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// Not one of libopus's output rates.
    #[error("opus cannot decode at {0} Hz (8000, 12000, 16000, 24000 or 48000)")]
    Unsupported(u32),
    /// libopus refused to create the decoder.
    #[error(transparent)]
    Opus(#[from] Error),
}

/// A mono Opus decoder.
pub struct OpusDecoder {
    decoder: Decoder,
    buf: Vec<i16>,
    /// Samples in 2.5 ms at the output rate (the PLC granule).
    granule: usize,
}

impl OpusDecoder {
    /// A decoder producing mono 48 kHz PCM (stereo streams are downmixed by libopus).
    pub fn new() -> Result<Self, Error> {
        Self::build(SampleRate::Hz48000, OPUS_RATE)
    }

    fn build(sr: SampleRate, rate: u32) -> Result<Self, Error> {
        Ok(OpusDecoder {
            decoder: Decoder::new(sr, Channels::Mono)?,
            buf: vec![0; MAX_FRAME * rate as usize / OPUS_RATE as usize],
            granule: rate as usize / 400,
        })
    }

    /// A decoder producing mono PCM at `rate`, one of libopus's output rates (8, 12, 16, 24 or
    /// 48 kHz); libopus resamples internally.
    pub fn with_rate(rate: u32) -> Result<Self, RateError> {
        let sr = match rate {
            8000 => SampleRate::Hz8000,
            12000 => SampleRate::Hz12000,
            16000 => SampleRate::Hz16000,
            24000 => SampleRate::Hz24000,
            48000 => SampleRate::Hz48000,
            other => return Err(RateError::Unsupported(other)),
        };
        Ok(Self::build(sr, rate)?)
    }

    /// Decodes one packet, appending its samples to `out`. An empty packet (DTX) yields
    /// concealment of the last frame's length.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, Error> {
        let input = if packet.is_empty() {
            None
        } else {
            Some(Packet::try_from(packet)?)
        };
        let signals = MutSignals::try_from(&mut self.buf[..])?;
        let n = self.decoder.decode(input, signals, false)?;
        out.extend_from_slice(&self.buf[..n]);
        Ok(n)
    }

    /// Conceals `samples` missing samples (lost packets), appending them to `out`.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<(), Error> {
        let mut left = samples;
        while left > 0 {
            // PLC works in multiples of 2.5 ms; ask for at most 20 ms at a time.
            let g = self.granule;
            let chunk = left.min(8 * g);
            let chunk = chunk.div_ceil(g) * g;
            let signals = MutSignals::try_from(&mut self.buf[..chunk])?;
            let n = self.decoder.decode(None, signals, false)?;
            let take = n.min(left);
            out.extend_from_slice(&self.buf[..take]);
            if n == 0 {
                out.resize(out.len() + left, 0);
                break;
            }
            left -= take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiopus::coder::Encoder;
    use audiopus::Application;

    /// Zero crossings per second of `pcm` at `rate`, halved: the dominant frequency of a tone.
    fn frequency(pcm: &[i16], rate: u32) -> f64 {
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (pcm.len() as f64 / rate as f64)
    }

    #[test]
    fn decodes_an_encoded_tone_and_conceals_loss() {
        let enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
        let tone: Vec<i16> = (0..48_000)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 48_000.0).sin()) as i16
            })
            .collect();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        let mut packet = [0u8; 1500];
        for frame in tone.chunks(960) {
            let n = enc.encode(frame, &mut packet).unwrap();
            assert_eq!(dec.decode(&packet[..n], &mut out).unwrap(), 960);
        }
        assert_eq!(out.len(), 48_000);
        // Skip the codec's start-up; the tone comes back at 440 Hz.
        let f = frequency(&out[4800..], 48_000);
        assert!((f - 440.0).abs() < 5.0, "{f}");
        let before = out.len();
        dec.conceal(1920, &mut out).unwrap();
        assert_eq!(out.len() - before, 1920);
        assert!(dec.decode(&[0xFF, 0xFF, 0xFF], &mut out).is_err() || out.len() > before);
    }
}
