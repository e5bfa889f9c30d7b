//! G.729 (ITU-T, CS-ACELP 8 kbit/s, Annexes A and B) to 8 kHz mono PCM, and back for the
//! generator and the tests, through Debian's libbcg729 (Belledonne's implementation of the
//! ITU reference). The FFI is this module's only unsafe code: each channel context is created,
//! used and freed by one owner.
//!
//! An RTP payload is zero or more 10-byte frames, optionally followed by one 2-byte Annex B
//! SID frame (RFC 3551 4.5.6); any other length is malformed. A SID frame yields comfort noise;
//! a lost or untransmitted frame is decoded as an erasure: the decoder conceals after speech
//! and goes on with comfort noise after a SID.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::NonNull;

/// Output rate.
pub const G729_RATE: u32 = 8_000;
/// Samples per 10 ms frame.
pub const FRAME_SAMPLES: usize = 80;
/// Bytes of a speech frame.
const FRAME_BYTES: usize = 10;
/// Bytes of an Annex B SID frame.
const SID_BYTES: usize = 2;

#[link(name = "bcg729")]
extern "C" {
    fn initBcg729DecoderChannel() -> *mut c_void;
    fn closeBcg729DecoderChannel(ctx: *mut c_void);
    fn bcg729Decoder(
        ctx: *mut c_void,
        bit_stream: *const u8,
        bit_stream_length: u8,
        frame_erasure: u8,
        sid_frame: u8,
        rfc3389_payload: u8,
        signal: *mut i16,
    );
    fn initBcg729EncoderChannel(enable_vad: u8) -> *mut c_void;
    fn closeBcg729EncoderChannel(ctx: *mut c_void);
    fn bcg729Encoder(ctx: *mut c_void, input: *const i16, bit_stream: *mut u8, len: *mut u8);
}

/// G.729 errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libbcg729 could not allocate a channel.
    #[error("libbcg729 could not create a G.729 channel")]
    NoChannel,
    /// The payload is not 10-byte frames with an optional 2-byte SID frame.
    #[error("G.729 payload of {0} bytes (10-byte frames and an optional 2-byte SID)")]
    Length(usize),
}

/// A G.729 decoder (one per RTP stream).
pub struct G729Decoder {
    ctx: NonNull<c_void>,
}

// The context is owned by this value alone.
unsafe impl Send for G729Decoder {}

impl G729Decoder {
    /// A decoder.
    pub fn new() -> Result<Self, Error> {
        // SAFETY: plain constructor; a null result is refused.
        let ctx = unsafe { initBcg729DecoderChannel() };
        NonNull::new(ctx)
            .map(|ctx| G729Decoder { ctx })
            .ok_or(Error::NoChannel)
    }

    /// Decodes one RTP payload, appending 80 samples per frame to `out`; returns how many.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, Error> {
        let sid = payload.len() % FRAME_BYTES;
        if sid != 0 && sid != SID_BYTES {
            return Err(Error::Length(payload.len()));
        }
        let (speech, sid) = payload.split_at(payload.len() - sid);
        let before = out.len();
        for frame in speech.chunks(FRAME_BYTES) {
            self.frame(frame, false, out);
        }
        if !sid.is_empty() {
            self.frame(sid, true, out);
        }
        Ok(out.len() - before)
    }

    /// Conceals `frames` lost or untransmitted frames (80 samples each) into `out`.
    pub fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        for _ in 0..frames {
            self.frame(&[], false, out);
        }
    }

    fn frame(&mut self, bits: &[u8], sid: bool, out: &mut Vec<i16>) {
        let mut signal = [0i16; FRAME_SAMPLES];
        let erased = u8::from(bits.is_empty());
        // bcg729 reads its bit stream argument even for an erased frame: give it ten bytes.
        let mut stream = [0u8; FRAME_BYTES];
        stream[..bits.len()].copy_from_slice(bits);
        // SAFETY: the context is live; `stream` holds 10 readable bytes of which `bits.len()`
        // are the frame (none: erased); `signal` holds the 80 samples bcg729 writes.
        unsafe {
            bcg729Decoder(
                self.ctx.as_ptr(),
                stream.as_ptr(),
                bits.len() as u8,
                erased,
                u8::from(sid),
                0,
                signal.as_mut_ptr(),
            )
        };
        out.extend_from_slice(&signal);
    }
}

impl Drop for G729Decoder {
    fn drop(&mut self) {
        // SAFETY: created by initBcg729DecoderChannel, closed once.
        unsafe { closeBcg729DecoderChannel(self.ctx.as_ptr()) };
    }
}

/// A G.729 encoder (capgen and tests), with Annex B VAD/DTX on request.
pub struct G729Encoder {
    ctx: NonNull<c_void>,
}

// As for the decoder: one owner.
unsafe impl Send for G729Encoder {}

impl G729Encoder {
    /// An encoder; with `vad`, silence gives 2-byte SID frames or nothing (DTX).
    pub fn new(vad: bool) -> Result<Self, Error> {
        // SAFETY: plain constructor; a null result is refused.
        let ctx = unsafe { initBcg729EncoderChannel(u8::from(vad)) };
        NonNull::new(ctx)
            .map(|ctx| G729Encoder { ctx })
            .ok_or(Error::NoChannel)
    }

    /// Encodes one 80-sample frame, appending 10 bytes (speech), 2 (SID) or none (DTX).
    pub fn encode(&mut self, frame: &[i16; FRAME_SAMPLES], out: &mut Vec<u8>) -> usize {
        let mut bits = [0u8; FRAME_BYTES];
        let mut len = 0u8;
        // SAFETY: the context is live; `frame` is 80 samples; `bits` holds up to 10 bytes.
        unsafe {
            bcg729Encoder(
                self.ctx.as_ptr(),
                frame.as_ptr(),
                bits.as_mut_ptr(),
                &mut len,
            )
        };
        let n = usize::from(len).min(FRAME_BYTES);
        out.extend_from_slice(&bits[..n]);
        n
    }
}

impl Drop for G729Encoder {
    fn drop(&mut self) {
        // SAFETY: created by initBcg729EncoderChannel, closed once.
        unsafe { closeBcg729EncoderChannel(self.ctx.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(hz: f64, seconds: usize, amplitude: f64) -> Vec<[i16; FRAME_SAMPLES]> {
        (0..seconds * 100)
            .map(|f| {
                std::array::from_fn(|i| {
                    let n = (f * FRAME_SAMPLES + i) as f64;
                    (amplitude * (2.0 * std::f64::consts::PI * hz * n / 8000.0).sin()) as i16
                })
            })
            .collect()
    }

    #[test]
    fn a_tone_survives_and_lengths_are_checked() {
        let mut enc = G729Encoder::new(false).unwrap();
        let mut dec = G729Decoder::new().unwrap();
        let mut out = Vec::new();
        for f in frames(440.0, 1, 8000.0).chunks(2) {
            let mut payload = Vec::new();
            for fr in f {
                assert_eq!(enc.encode(fr, &mut payload), 10);
            }
            assert_eq!(dec.decode(&payload, &mut out).unwrap(), 160);
        }
        let crossings = out[800..]
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        let hz = crossings as f64 / 2.0 / ((out.len() - 800) as f64 / 8000.0);
        assert!((hz - 440.0).abs() < 10.0, "{hz}");
        assert!(matches!(
            dec.decode(&[0; 7], &mut out),
            Err(Error::Length(7))
        ));
        let before = out.len();
        dec.conceal(3, &mut out);
        assert_eq!(out.len() - before, 240);
    }

    #[test]
    fn annex_b_silence_gives_sid_frames_decoded_as_quiet_noise() {
        let mut enc = G729Encoder::new(true).unwrap();
        let mut dec = G729Decoder::new().unwrap();
        let mut out = Vec::new();
        let mut sid = 0;
        // Speech, then near silence: the encoder sends SID frames and then nothing.
        let mut all = frames(440.0, 1, 8000.0);
        all.extend(frames(440.0, 2, 4.0));
        for fr in &all {
            let mut payload = Vec::new();
            match enc.encode(fr, &mut payload) {
                0 => dec.conceal(1, &mut out),
                n => {
                    sid += usize::from(n == 2);
                    dec.decode(&payload, &mut out).unwrap();
                }
            }
        }
        assert!(sid > 0, "no SID frame");
        assert_eq!(out.len(), all.len() * FRAME_SAMPLES);
        let tail = &out[out.len() - 8000..];
        let rms = (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 8000.0).sqrt();
        assert!(rms < 200.0, "comfort noise is quiet: {rms}");
    }
}
