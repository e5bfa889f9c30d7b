//! G.722 (ITU-T, 64 kbit/s, SB-ADPCM) to 16 kHz mono PCM, and back for the generator and the
//! tests, through Debian's spandsp (`libspandsp`, Steve Underwood's implementation of the ITU
//! reference). The FFI is this module's only unsafe code: each state is created, used and
//! freed by one owner. One byte of payload is two samples at 16 kHz; the RTP clock of G.722 is
//! nevertheless 8000 (RFC 3551 4.5.2).
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::ptr::NonNull;

/// Output rate of the decoder.
pub const G722_RATE: u32 = 16_000;
/// spandsp's bit rate argument for 64 kbit/s.
const BITS_64K: c_int = 64_000;
/// Payload bytes handled per FFI call (320 samples out).
const CHUNK: usize = 160;

#[repr(C)]
struct DecodeState {
    _opaque: [u8; 0],
}

#[repr(C)]
struct EncodeState {
    _opaque: [u8; 0],
}

#[link(name = "spandsp")]
extern "C" {
    fn g722_decode_init(s: *mut DecodeState, rate: c_int, options: c_int) -> *mut DecodeState;
    fn g722_decode(s: *mut DecodeState, amp: *mut i16, data: *const u8, len: c_int) -> c_int;
    fn g722_decode_free(s: *mut DecodeState) -> c_int;
    fn g722_encode_init(s: *mut EncodeState, rate: c_int, options: c_int) -> *mut EncodeState;
    fn g722_encode(s: *mut EncodeState, data: *mut u8, amp: *const i16, len: c_int) -> c_int;
    fn g722_encode_free(s: *mut EncodeState) -> c_int;
}

/// spandsp could not allocate a codec state.
#[derive(Debug, thiserror::Error)]
#[error("spandsp could not create a G.722 state")]
pub struct NoState;

/// A G.722 decoder (one per RTP stream: the ADPCM state runs across packets).
pub struct G722Decoder {
    state: NonNull<DecodeState>,
}

// The state is owned by this value alone and spandsp keeps no other reference to it.
unsafe impl Send for G722Decoder {}

impl G722Decoder {
    /// A decoder at 64 kbit/s producing 16 kHz samples.
    pub fn new() -> Result<Self, NoState> {
        // SAFETY: a null state asks spandsp to allocate one; a null result is refused.
        let s = unsafe { g722_decode_init(std::ptr::null_mut(), BITS_64K, 0) };
        NonNull::new(s)
            .map(|state| G722Decoder { state })
            .ok_or(NoState)
    }

    /// Decodes `payload`, appending two samples per byte to `out`; returns how many.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> usize {
        let mut buf = [0i16; 2 * CHUNK];
        let mut total = 0;
        for chunk in payload.chunks(CHUNK) {
            // SAFETY: the state is live; `buf` holds the 2 samples per byte spandsp writes.
            let n = unsafe {
                g722_decode(
                    self.state.as_ptr(),
                    buf.as_mut_ptr(),
                    chunk.as_ptr(),
                    chunk.len() as c_int,
                )
            };
            let n = (n.max(0) as usize).min(buf.len());
            out.extend_from_slice(&buf[..n]);
            total += n;
        }
        total
    }
}

impl Drop for G722Decoder {
    fn drop(&mut self) {
        // SAFETY: allocated by g722_decode_init, freed once.
        unsafe { g722_decode_free(self.state.as_ptr()) };
    }
}

/// A G.722 encoder (capgen and tests).
pub struct G722Encoder {
    state: NonNull<EncodeState>,
}

// As for the decoder: one owner.
unsafe impl Send for G722Encoder {}

impl G722Encoder {
    /// An encoder at 64 kbit/s taking 16 kHz samples.
    pub fn new() -> Result<Self, NoState> {
        // SAFETY: as for the decoder.
        let s = unsafe { g722_encode_init(std::ptr::null_mut(), BITS_64K, 0) };
        NonNull::new(s)
            .map(|state| G722Encoder { state })
            .ok_or(NoState)
    }

    /// Encodes `pcm` (16 kHz; an even count), appending one byte per two samples to `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let mut buf = [0u8; CHUNK];
        for chunk in pcm.chunks(2 * CHUNK) {
            // SAFETY: the state is live; `buf` holds the byte per two samples spandsp writes.
            let n = unsafe {
                g722_encode(
                    self.state.as_ptr(),
                    buf.as_mut_ptr(),
                    chunk.as_ptr(),
                    chunk.len() as c_int,
                )
            };
            out.extend_from_slice(&buf[..(n.max(0) as usize).min(CHUNK)]);
        }
    }
}

impl Drop for G722Encoder {
    fn drop(&mut self) {
        // SAFETY: allocated by g722_encode_init, freed once.
        unsafe { g722_encode_free(self.state.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 16_000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn a_wideband_tone_survives_encode_and_decode() {
        // 5 kHz: above what narrowband carries.
        let pcm = tone(5000.0, 16_000);
        let mut enc = G722Encoder::new().unwrap();
        let mut bytes = Vec::new();
        enc.encode(&pcm, &mut bytes);
        assert_eq!(bytes.len(), 8000);
        let mut dec = G722Decoder::new().unwrap();
        let mut out = Vec::new();
        for packet in bytes.chunks(160) {
            assert_eq!(dec.decode(packet, &mut out), 320);
        }
        assert_eq!(out.len(), 16_000);
        let crossings = out[1600..]
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        let hz = crossings as f64 / 2.0 / ((out.len() - 1600) as f64 / 16_000.0);
        assert!((hz - 5000.0).abs() < 20.0, "{hz}");
        assert!(dec.decode(&[], &mut out) == 0);
    }
}
