//! A call's quality per direction as the wire shows it: the ITU-T G.107 E-model's
//! transmission rating R and its MOS estimate, from the codec, the packet loss and the RFC
//! 3550 jitter the appliance measured (as VoIPmonitor and similar tools estimate it).
//!
//! Rules: the default E-model values (Ro - Is = 93.2, A = 0); the one-way delay is not
//! measurable from a SPAN, so it is estimated as what a jitter buffer would add (twice the
//! jitter), the packetisation time and 10 ms of codec and playout: the figure rates the line,
//! not the end-to-end delay. Loss is taken as random (BurstR = 1). Equipment impairments from
//! ITU-T G.113 Appendix I: G.711 with packet loss concealment Ie 0, Bpl 25.1; G.729(A) Ie 11,
//! Bpl 19; G.722 Ie 0, Bpl 25.1 (narrowband scale); Opus, not in G.113, rated as G.711 with
//! concealment.

/// R with no impairment but the basic signal-to-noise (G.107's default Ro - Is).
pub const R_MAX: f64 = 93.2;

/// What the E-model needs of one direction.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct LineMeasure {
    /// Equipment impairment of the codec (Ie).
    pub ie: f64,
    /// Its packet-loss robustness (Bpl).
    pub bpl: f64,
    /// Packets lost, percent of those sent.
    pub loss_pct: f64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Packetisation time, ms.
    pub ptime_ms: f64,
}

impl LineMeasure {
    /// The impairments of the codec a payload name (as `flows` prints them: g711U, g711A,
    /// g729, g722, opus) says; unknown names are rated as G.711.
    pub fn for_payload(name: &str) -> (f64, f64) {
        let n = name.to_ascii_lowercase();
        if n.starts_with("g729") {
            (11.0, 19.0)
        } else {
            (0.0, 25.1)
        }
    }
}

/// The delay impairment Id for a one-way delay of `ta` ms (G.107's simplified form).
fn delay_impairment(ta: f64) -> f64 {
    0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 }
}

/// The transmission rating R (0 to 100) of one direction.
pub fn r_factor(m: &LineMeasure) -> f64 {
    let ta = 2.0 * m.jitter_ms.max(0.0) + m.ptime_ms.max(0.0) + 10.0;
    let ppl = m.loss_pct.clamp(0.0, 100.0);
    let ie_eff = m.ie + (95.0 - m.ie) * ppl / (ppl + m.bpl);
    (R_MAX - delay_impairment(ta) - ie_eff).clamp(0.0, 100.0)
}

/// The MOS (1 to 4.5) G.107 gives for rating `r`.
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g711(loss_pct: f64, jitter_ms: f64) -> LineMeasure {
        let (ie, bpl) = LineMeasure::for_payload("g711U");
        LineMeasure {
            ie,
            bpl,
            loss_pct,
            jitter_ms,
            ptime_ms: 20.0,
        }
    }

    #[test]
    fn a_clean_g711_line_rates_about_4_4() {
        let r = r_factor(&g711(0.0, 0.0));
        // 93.2 - 0.024 * 30 ms.
        assert!((r - 92.48).abs() < 1e-9, "{r}");
        let m = mos(r);
        assert!((4.39..4.42).contains(&m), "{m}");
    }

    #[test]
    fn loss_and_jitter_lower_the_rating_as_g107_says() {
        // Ie,eff at 1 % loss with Bpl 25.1: 95 * 1 / 26.1 = 3.64.
        let r = r_factor(&g711(1.0, 0.0));
        assert!((r - (92.48 - 95.0 / 26.1)).abs() < 1e-9, "{r}");
        // 5 % loss: a line people complain about (MOS under 4).
        assert!(mos(r_factor(&g711(5.0, 0.0))) < 4.0);
        // 100 ms of jitter puts the delay past the knee at 177.3 ms.
        let r = r_factor(&g711(0.0, 100.0));
        assert!((r - (93.2 - 0.024 * 230.0 - 0.11 * (230.0 - 177.3))).abs() < 1e-9);
        // G.729 starts lower than G.711.
        let (ie, bpl) = LineMeasure::for_payload("G729");
        let g729 = LineMeasure {
            ie,
            bpl,
            ..g711(0.0, 0.0)
        };
        assert!((r_factor(&g729) - (92.48 - 11.0)).abs() < 1e-9);
    }

    #[test]
    fn the_scale_is_bounded() {
        assert_eq!(mos(-5.0), 1.0);
        assert_eq!(mos(120.0), 4.5);
        assert_eq!(r_factor(&g711(100.0, 1000.0)), 0.0);
        assert!(mos(50.0) > 2.5 && mos(50.0) < 2.6);
    }
}
