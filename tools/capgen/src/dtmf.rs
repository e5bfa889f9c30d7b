//! DTMF digits the caller types, as a phone sends them: RFC 4733 telephone-events (payload
//! type 101, the event's timestamp fixed, the duration growing, the end packet sent three
//! times with one sequence number) or in band (the ITU-T Q.23 tone pair in the audio).
//! Each digit lasts `DIGIT_PACKETS` packet times, then `GAP_PACKETS` of audio.

/// Packet times per digit (100 ms at 20 ms).
pub const DIGIT_PACKETS: u64 = 5;
/// Packet times of audio between digits.
pub const GAP_PACKETS: u64 = 5;
/// Extra copies of an event's end packet (three in all).
pub const END_COPIES: usize = 2;

/// How digits are sent.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DtmfOptions {
    /// Digits the caller types as RFC 4733 telephone-events (0-9, *, #, A-D).
    #[arg(long, value_name = "DIGITS")]
    pub dtmf: Option<String>,
    /// Digits the caller types in band (tone pairs in the G.711 audio).
    #[arg(long, value_name = "DIGITS")]
    pub dtmf_inband: Option<String>,
    /// Seconds into the call at which the first digit starts.
    #[arg(long, default_value_t = 2.0)]
    pub dtmf_at: f64,
}

/// What the caller's packet at index k carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Slot {
    /// Audio as usual.
    Audio,
    /// Audio replaced by this digit's tone pair (in band).
    Tone(char),
    /// A telephone-event packet: the digit, the packet index the event started at, and
    /// whether it is the end packet.
    Event {
        digit: char,
        start_k: u64,
        end: bool,
    },
}

/// The digits of one call and where they fall.
#[derive(Clone, Debug)]
pub struct DtmfPlan {
    digits: Vec<char>,
    first_k: u64,
    inband: bool,
}

impl DtmfPlan {
    /// The plan for `o` at `ptime_ms` packets, or None without digits.
    pub fn new(o: &DtmfOptions, ptime_ms: u32) -> anyhow::Result<Option<Self>> {
        let (digits, inband) = match (&o.dtmf, &o.dtmf_inband) {
            (Some(_), Some(_)) => anyhow::bail!("--dtmf and --dtmf-inband: choose one"),
            (Some(d), None) => (d, false),
            (None, Some(d)) => (d, true),
            (None, None) => return Ok(None),
        };
        let digits: Vec<char> = digits.chars().collect();
        if let Some(bad) = digits.iter().find(|c| event_code(**c).is_none()) {
            anyhow::bail!("DTMF digit {bad:?}: use 0-9, *, #, A-D");
        }
        let first_k = (o.dtmf_at * 1000.0 / f64::from(ptime_ms)).round() as u64;
        Ok(Some(DtmfPlan {
            digits,
            first_k,
            inband,
        }))
    }

    /// What packet `k` of the caller's stream carries.
    pub fn slot(&self, k: u64) -> Slot {
        let Some(rel) = k.checked_sub(self.first_k) else {
            return Slot::Audio;
        };
        let period = DIGIT_PACKETS + GAP_PACKETS;
        let (i, pos) = ((rel / period) as usize, rel % period);
        let Some(&digit) = self.digits.get(i) else {
            return Slot::Audio;
        };
        let start_k = self.first_k + i as u64 * period;
        match (self.inband, pos) {
            (true, p) if p < DIGIT_PACKETS => Slot::Tone(digit),
            (false, p) if p <= DIGIT_PACKETS => Slot::Event {
                digit,
                start_k,
                end: p == DIGIT_PACKETS,
            },
            _ => Slot::Audio,
        }
    }

    /// Each digit's start and end, in packet indexes (end exclusive, the end packet included).
    pub fn windows(&self) -> Vec<(char, u64, u64)> {
        let period = DIGIT_PACKETS + GAP_PACKETS;
        let len = DIGIT_PACKETS + u64::from(!self.inband);
        (self.digits.iter().enumerate())
            .map(|(i, d)| {
                let s = self.first_k + i as u64 * period;
                (*d, s, s + len)
            })
            .collect()
    }
}

/// The RFC 4733 event code of a digit.
pub fn event_code(digit: char) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => 12 + (digit as u8 - b'A'),
        _ => return None,
    })
}

/// The Q.23 low and high frequencies of a digit.
pub fn tone_pair(digit: char) -> (f64, f64) {
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    for (r, row) in KEYS.iter().enumerate() {
        if let Some(c) = row.iter().position(|k| *k == digit) {
            return (LOW[r], HIGH[c]);
        }
    }
    (LOW[0], HIGH[0])
}

/// Sample `n` (8 kHz) of a digit's tone pair: each tone at about -10 dBm0.
pub fn tone_sample(digit: char, n: u64) -> i16 {
    let (lo, hi) = tone_pair(digit);
    let t = n as f64 / 8000.0;
    let w = |f: f64| (2.0 * std::f64::consts::PI * f * t).sin();
    (7000.0 * (w(lo) + w(hi))) as i16
}

/// An RFC 4733 event payload: event, end bit and volume 10, duration in timestamp units.
pub fn event_payload(digit: char, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        event_code(digit).unwrap_or(0),
        if end { 0x80 | 10 } else { 10 },
        d[0],
        d[1],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(inband: bool) -> DtmfPlan {
        let digits = Some("1#".to_owned());
        let o = DtmfOptions {
            dtmf: (!inband).then(|| digits.clone()).flatten(),
            dtmf_inband: inband.then_some(digits).flatten(),
            dtmf_at: 1.0,
        };
        DtmfPlan::new(&o, 20).unwrap().unwrap()
    }

    #[test]
    fn events_cover_the_digit_then_the_end_packet() {
        let p = plan(false);
        assert_eq!(p.slot(49), Slot::Audio);
        let ev = |start_k, end| Slot::Event {
            digit: if start_k == 50 { '1' } else { '#' },
            start_k,
            end,
        };
        assert_eq!(p.slot(50), ev(50, false));
        assert_eq!(p.slot(54), ev(50, false));
        assert_eq!(p.slot(55), ev(50, true));
        assert_eq!(p.slot(56), Slot::Audio);
        assert_eq!(p.slot(60), ev(60, false));
        assert_eq!(p.slot(70), Slot::Audio);
        assert_eq!(p.windows(), vec![('1', 50, 56), ('#', 60, 66)]);
    }

    #[test]
    fn inband_digits_replace_audio_for_their_length() {
        let p = plan(true);
        assert_eq!(p.slot(50), Slot::Tone('1'));
        assert_eq!(p.slot(54), Slot::Tone('1'));
        assert_eq!(p.slot(55), Slot::Audio);
        assert_eq!(p.windows(), vec![('1', 50, 55), ('#', 60, 65)]);
    }

    #[test]
    fn codes_pairs_and_payloads() {
        assert_eq!(event_code('#'), Some(11));
        assert_eq!(event_code('D'), Some(15));
        assert_eq!(event_code('x'), None);
        assert_eq!(tone_pair('5'), (770.0, 1336.0));
        assert_eq!(tone_pair('D'), (941.0, 1633.0));
        assert_eq!(event_payload('9', true, 800), [9, 0x8A, 3, 0x20]);
        let o = DtmfOptions {
            dtmf: Some("1x".into()),
            ..Default::default()
        };
        assert!(DtmfPlan::new(&o, 20).is_err());
    }
}
