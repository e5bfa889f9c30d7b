//! Two rendered directions of a call on one capture-time axis: mixed to mono (sum, saturating)
//! or interleaved stereo (left = first, right = second). Rates must match (the caller renders
//! both at the same rate).

use super::timeline::Rendered;

/// Aligns `a` and `b` by their start times and returns (left, right) padded to equal length,
/// and the rate.
fn align(a: &Rendered, b: &Rendered) -> (Vec<i16>, Vec<i16>, u32) {
    let rate = a.rate.max(b.rate);
    let start = a.start.min(b.start);
    let place = |r: &Rendered| {
        let lead = ((r.start - start).as_nanos() as i128 * rate as i128 / 1_000_000_000) as usize;
        let mut v = vec![0i16; lead];
        if r.rate == rate {
            v.extend_from_slice(&r.pcm);
        } else {
            let f = (rate / r.rate.max(1)) as usize;
            v.extend(r.pcm.iter().flat_map(|&s| std::iter::repeat_n(s, f.max(1))));
        }
        v
    };
    let (mut l, mut r) = (place(a), place(b));
    let n = l.len().max(r.len());
    l.resize(n, 0);
    r.resize(n, 0);
    (l, r, rate)
}

/// Mono: the two directions summed with saturation.
pub fn mix_mono(a: &Rendered, b: &Rendered) -> (Vec<i16>, u32) {
    let (l, r, rate) = align(a, b);
    (
        l.iter()
            .zip(&r)
            .map(|(x, y)| x.saturating_add(*y))
            .collect(),
        rate,
    )
}

/// Stereo: interleaved left = `a`, right = `b`.
pub fn interleave_stereo(a: &Rendered, b: &Rendered) -> (Vec<i16>, u32) {
    let (l, r, rate) = align(a, b);
    (l.iter().zip(&r).flat_map(|(x, y)| [*x, *y]).collect(), rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::timeline::TimelineStats;
    use crate::time::Timestamp;

    fn r(pcm: Vec<i16>, start_ms: i64) -> Rendered {
        Rendered {
            pcm,
            rate: 8000,
            start: Timestamp::from_nanos(start_ms * 1_000_000),
            stats: TimelineStats::default(),
        }
    }

    #[test]
    fn alignment_mono_and_stereo() {
        let a = r(vec![1000; 16], 0);
        let b = r(vec![30000; 8], 1); // starts 1 ms = 8 samples later
        let (m, rate) = mix_mono(&a, &b);
        assert_eq!(rate, 8000);
        assert_eq!(m.len(), 16);
        assert_eq!(m[0], 1000);
        assert_eq!(m[8], 31000);
        let (s, _) = interleave_stereo(&a, &b);
        assert_eq!(s.len(), 32);
        assert_eq!((s[0], s[1]), (1000, 0));
        assert_eq!((s[16], s[17]), (1000, 30000));
        let loud = r(vec![30000; 4], 0);
        assert_eq!(mix_mono(&loud, &loud).0[0], i16::MAX);
    }
}
