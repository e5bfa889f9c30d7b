//! Encrypted media recognised without signalling. G.711 payload (speech, tones, silence,
//! comfort noise, even full-scale noise) has a strongly skewed byte distribution: the
//! companding puts most samples in a few segments, so the high nibble of the bytes takes a few
//! values. SRTP payload is uniform. Over the first [`SAMPLE_BYTES`] payload bytes (one 20 ms
//! packet, decided before its stream's first packet is forwarded) of a PCMU or
//! PCMA stream (the RTP header stays in clear under SRTP, so the payload type is known), the
//! chi-square distance of the high nibbles from uniform decides: under [`UNIFORM_CHI2`] (15
//! degrees of freedom: uniform data exceeds 44 once in ten thousand) the stream is encrypted.
//! Other payload types are not tested (Opus and G.729 payload is compressed, near uniform).
//! Per packet: a few hundred counter increments for the first packets, then one branch.

/// Payload bytes the test looks at.
pub const SAMPLE_BYTES: u32 = 160;
/// Below this chi-square the high nibbles are uniform: encrypted.
pub const UNIFORM_CHI2: f64 = 50.0;

/// The test's state for one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CipherTest {
    nibbles: [u16; 16],
    bytes: u32,
    verdict: Option<bool>,
}

impl CipherTest {
    /// One packet's payload of payload type `pt`.
    pub fn observe(&mut self, pt: u8, payload: &[u8]) {
        if self.verdict.is_some() || !(pt == 0 || pt == 8) {
            return;
        }
        let take = payload.len().min((SAMPLE_BYTES - self.bytes) as usize);
        for b in &payload[..take] {
            self.nibbles[usize::from(b >> 4)] += 1;
        }
        self.bytes += take as u32;
        if self.bytes >= SAMPLE_BYTES {
            self.verdict = Some(self.chi2() < UNIFORM_CHI2);
        }
    }

    /// True once the payload looked uniform.
    pub fn encrypted(&self) -> bool {
        self.verdict == Some(true)
    }

    fn chi2(&self) -> f64 {
        let expected = f64::from(self.bytes) / 16.0;
        self.nibbles
            .iter()
            .map(|&n| (f64::from(n) - expected).powi(2) / expected)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711;

    fn verdict(pt: u8, packets: impl Iterator<Item = Vec<u8>>) -> bool {
        let mut t = CipherTest::default();
        for p in packets {
            t.observe(pt, &p);
        }
        assert!(t.verdict.is_some(), "decided");
        t.encrypted()
    }

    fn xorshift(seed: u32) -> impl Iterator<Item = u8> {
        let mut x = seed.max(1);
        std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
    }

    #[test]
    fn random_payload_is_encrypted_and_g711_of_any_kind_is_not() {
        for seed in 1..50 {
            let mut r = xorshift(seed);
            let packets = (0..5).map(|_| r.by_ref().take(170).collect::<Vec<u8>>());
            assert!(verdict(0, packets), "seed {seed}");
        }
        let encode = |pt: u8, f: &dyn Fn(usize) -> f64| {
            (0..5)
                .map(|p| {
                    (0..160)
                        .map(|i| {
                            let x = f(p * 160 + i).clamp(-32768.0, 32767.0) as i16;
                            if pt == 0 {
                                g711::encode_ulaw(x)
                            } else {
                                g711::encode_alaw(x)
                            }
                        })
                        .collect::<Vec<u8>>()
                })
                .collect::<Vec<_>>()
        };
        let tone = |a: f64| move |i: usize| a * (i as f64 * 0.3).sin();
        let mut noise = xorshift(7);
        let noise: Vec<f64> = (0..800)
            .map(|_| (f64::from(noise.next().unwrap()) - 128.0) * 256.0)
            .collect();
        for pt in [0, 8] {
            for a in [0.0, 30.0, 1000.0, 8000.0, 32000.0] {
                assert!(
                    !verdict(pt, encode(pt, &tone(a)).into_iter()),
                    "{pt} tone {a}"
                );
            }
            let full_noise = |i: usize| noise[i];
            assert!(
                !verdict(pt, encode(pt, &full_noise).into_iter()),
                "{pt} noise"
            );
        }
    }

    #[test]
    fn other_payload_types_are_not_tested() {
        let mut t = CipherTest::default();
        let mut r = xorshift(3);
        for _ in 0..10 {
            t.observe(111, &r.by_ref().take(100).collect::<Vec<u8>>());
        }
        assert_eq!(t.verdict, None);
        assert!(!t.encrypted());
    }
}
