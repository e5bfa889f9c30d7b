//! RTP payload types and codecs: static assignments (RFC 3551), names as tshark prints them, RTP
//! clock rates, and a fixed-size payload-type map filled from SDP `a=rtpmap`. Pure data: no I/O,
//! no allocation.

use std::fmt;

/// A codec we name and (for some) decode.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law (PT 0).
    Pcmu,
    /// G.711 A-law (PT 8).
    Pcma,
    /// G.722 (PT 9; RTP clock 8000 by RFC 3551 even though it samples at 16 kHz).
    G722,
    /// G.729 (PT 18).
    G729,
    /// GSM (PT 3).
    Gsm,
    /// G.723 (PT 4).
    G723,
    /// Comfort noise, RFC 3389 (PT 13 or dynamic `CN`).
    Cn,
    /// Opus (dynamic, `opus/48000/2`).
    Opus,
    /// RFC 4733 DTMF events (dynamic, `telephone-event`).
    TelephoneEvent,
    /// H.263 video (PT 34).
    H263,
    /// Something else, named by SDP or unknown.
    Other,
}

impl Codec {
    /// Name as tshark's RTP stream table prints it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "g711U",
            Codec::Pcma => "g711A",
            Codec::G722 => "g722",
            Codec::G729 => "g729",
            Codec::Gsm => "GSM",
            Codec::G723 => "g723",
            Codec::Cn => "CN",
            Codec::Opus => "opus",
            Codec::TelephoneEvent => "telephone-event",
            Codec::H263 => "h263",
            Codec::Other => "unknown",
        }
    }

    /// From an SDP rtpmap encoding name (case-insensitive).
    pub fn from_encoding_name(name: &str) -> Codec {
        let eq = |s: &str| name.eq_ignore_ascii_case(s);
        if eq("PCMU") {
            Codec::Pcmu
        } else if eq("PCMA") {
            Codec::Pcma
        } else if eq("G722") {
            Codec::G722
        } else if eq("G729") {
            Codec::G729
        } else if eq("GSM") {
            Codec::Gsm
        } else if eq("G723") {
            Codec::G723
        } else if eq("CN") {
            Codec::Cn
        } else if eq("opus") {
            Codec::Opus
        } else if eq("telephone-event") {
            Codec::TelephoneEvent
        } else if eq("H263") {
            Codec::H263
        } else {
            Codec::Other
        }
    }

    /// True for codecs that carry audio to decode and play (not events, not comfort noise).
    pub fn is_audio(self) -> bool {
        matches!(
            self,
            Codec::Pcmu
                | Codec::Pcma
                | Codec::G722
                | Codec::G729
                | Codec::Gsm
                | Codec::G723
                | Codec::Opus
        )
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a payload type number means in one stream: codec and RTP clock rate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PayloadFormat {
    /// The codec.
    pub codec: Codec,
    /// RTP timestamp clock rate in Hz (0 when unknown).
    pub clock_rate: u32,
    /// Channels (1 unless SDP says otherwise).
    pub channels: u8,
}

/// Static payload types of RFC 3551 that matter for voice.
pub fn static_payload_format(pt: u8) -> Option<PayloadFormat> {
    let f = |codec, clock_rate| {
        Some(PayloadFormat {
            codec,
            clock_rate,
            channels: 1,
        })
    };
    match pt {
        0 => f(Codec::Pcmu, 8000),
        3 => f(Codec::Gsm, 8000),
        4 => f(Codec::G723, 8000),
        8 => f(Codec::Pcma, 8000),
        9 => f(Codec::G722, 8000),
        13 => f(Codec::Cn, 8000),
        18 => f(Codec::G729, 8000),
        34 => f(Codec::H263, 90000),
        _ => None,
    }
}

/// Most dynamic payload types one SDP media line maps.
pub const MAX_MAPPED_PAYLOADS: usize = 8;

/// Payload type -> format, from SDP rtpmap lines, with the static table as fallback. Fixed size.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PayloadMap {
    entries: [(u8, Option<PayloadFormat>); MAX_MAPPED_PAYLOADS],
    len: u8,
    /// The SDP says the media is encrypted (SRTP): nothing of it can be decoded.
    encrypted: bool,
    /// The SDP switched the media to fax (T.38 over UDPTL): no audio.
    fax: bool,
}

impl PayloadMap {
    /// An empty map (only the static table applies).
    pub const fn new() -> Self {
        PayloadMap {
            entries: [(0, None); MAX_MAPPED_PAYLOADS],
            len: 0,
            encrypted: false,
            fax: false,
        }
    }

    /// Marks the media encrypted (SRTP: `RTP/SAVP`, `a=crypto`, DTLS-SRTP).
    pub fn set_encrypted(&mut self) {
        self.encrypted = true;
    }

    /// Whether the SDP said the media is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Marks the media fax (an `m=image ... udptl t38` section).
    pub fn set_fax(&mut self) {
        self.fax = true;
    }

    /// Whether the SDP made the media fax (T.38).
    pub fn is_fax(&self) -> bool {
        self.fax
    }

    /// Records that `pt` means `format`; replaces an earlier entry; ignores overflow.
    pub fn insert(&mut self, pt: u8, format: PayloadFormat) {
        if let Some(e) = self.entries[..self.len as usize]
            .iter_mut()
            .find(|e| e.0 == pt)
        {
            e.1 = Some(format);
        } else if (self.len as usize) < MAX_MAPPED_PAYLOADS {
            self.entries[self.len as usize] = (pt, Some(format));
            self.len += 1;
        }
    }

    /// The format of `pt`: the mapped one, else the static one.
    pub fn get(&self, pt: u8) -> Option<PayloadFormat> {
        self.entries[..self.len as usize]
            .iter()
            .find(|e| e.0 == pt)
            .and_then(|e| e.1)
            .or_else(|| static_payload_format(pt))
    }

    /// The explicitly mapped entries.
    pub fn mapped(&self) -> impl Iterator<Item = (u8, PayloadFormat)> + '_ {
        self.entries[..self.len as usize]
            .iter()
            .filter_map(|(pt, f)| f.map(|f| (*pt, f)))
    }

    /// Merges `other` into `self` (other wins).
    pub fn merge(&mut self, other: &PayloadMap) {
        for (pt, f) in other.mapped() {
            self.insert(pt, f);
        }
        self.encrypted |= other.encrypted;
        self.fax |= other.fax;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_mapped() {
        let mut m = PayloadMap::new();
        assert_eq!(m.get(0).unwrap().codec, Codec::Pcmu);
        assert_eq!(m.get(101), None);
        m.insert(
            101,
            PayloadFormat {
                codec: Codec::TelephoneEvent,
                clock_rate: 8000,
                channels: 1,
            },
        );
        assert_eq!(m.get(101).unwrap().codec, Codec::TelephoneEvent);
        assert_eq!(Codec::from_encoding_name("pcma"), Codec::Pcma);
        assert_eq!(Codec::Opus.name(), "opus");
    }
}
