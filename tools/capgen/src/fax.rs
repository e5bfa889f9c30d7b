//! A call switched to fax: at `--t38-at` the caller re-INVITEs to T.38 (`m=image PORT udptl
//! t38` on the same addresses and ports), both sides then send UDPTL instead of RTP, and with
//! `--t38-back-at` a second re-INVITE returns the call to audio (a new SSRC each way). The
//! re-INVITE's SDP replaces the audio line, or keeps it with port 0 or `a=inactive`.

use std::net::Ipv4Addr;

use crate::sip_text::sdp;
use crate::Law;

/// Fax switch-over of every call.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FaxOptions {
    /// Seconds into the call at which a re-INVITE switches it to fax (T.38 over UDPTL).
    #[arg(long, value_name = "SECS")]
    pub t38_at: Option<f64>,
    /// Seconds into the call at which a second re-INVITE switches it back to audio.
    #[arg(long, value_name = "SECS", requires = "t38_at")]
    pub t38_back_at: Option<f64>,
    /// The T.38 SDP: `replace` (m=image instead of m=audio), `port0` (m=audio with port 0,
    /// then m=image) or `inactive` (m=audio a=inactive, then m=image).
    #[arg(long, default_value = "replace", value_parser = ["replace", "port0", "inactive"])]
    pub t38_sdp: String,
}

/// Packet indexes (from the call's first RTP packet) at which the call is fax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaxPlan {
    /// First packet time sent as UDPTL.
    pub start_k: u64,
    /// First packet time back to RTP, if the call returns to audio.
    pub back_k: Option<u64>,
}

/// Packet times between a re-INVITE and the first packet of the new media (its 200 OK comes
/// 5 ms after it: the media switches at the answer, as the phones do).
pub const REINVITE_LEAD: u64 = 1;

impl FaxPlan {
    /// The plan of `o` for `ptime_ms` packets of a call of `packets` packet times.
    pub fn new(o: &FaxOptions, ptime_ms: u32, packets: u64) -> anyhow::Result<Option<Self>> {
        let Some(at) = o.t38_at else { return Ok(None) };
        let k = |s: f64| (s * 1000.0 / f64::from(ptime_ms)).round() as u64;
        let start_k = k(at);
        let back_k = o.t38_back_at.map(k);
        if start_k < REINVITE_LEAD + 2 || start_k >= packets {
            anyhow::bail!("--t38-at must fall inside the call, after its first packets");
        }
        if back_k.is_some_and(|b| b <= start_k + REINVITE_LEAD || b >= packets) {
            anyhow::bail!("--t38-back-at must fall inside the call, after --t38-at");
        }
        Ok(Some(FaxPlan { start_k, back_k }))
    }

    /// True when packet time `k` carries fax.
    pub fn is_fax(&self, k: u64) -> bool {
        k >= self.start_k && self.back_k.is_none_or(|b| k < b)
    }
}

/// The re-INVITE's offer or answer switching `ip:port` to T.38.
pub fn t38_sdp(ip: Ipv4Addr, port: u16, law: Law, ptime: u32, style: &str) -> String {
    let image = format!(
        "m=image {port} udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n\
         a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxDatagram:72\r\n\
         a=T38FaxUdpEC:t38UDPRedundancy\r\n"
    );
    let head = format!("v=0\r\no=capgen 1 2 IN IP4 {ip}\r\ns=capgen\r\nc=IN IP4 {ip}\r\nt=0 0\r\n");
    match style {
        "port0" => format!("{head}m=audio 0 RTP/AVP {}\r\n{image}", law.pt()),
        "inactive" => {
            let audio = sdp(ip, port, law, ptime, "inactive");
            let audio = audio.split_once("m=audio").map_or("", |(_, m)| m);
            // The audio line stays, inactive, on another port; fax on the call's port.
            let audio = audio.replacen(&port.to_string(), &(port + 100).to_string(), 1);
            format!("{head}m=audio{audio}{image}")
        }
        _ => format!("{head}{image}"),
    }
}

/// One UDPTL datagram (T.38 Annex A): sequence number, a primary IFP carrying fax data, and
/// the previous IFP as redundancy.
pub fn udptl(seq: u16, data: &[u8; 16]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + 2 * (1 + 18) + 2);
    v.extend_from_slice(&seq.to_be_bytes());
    // IFP: t4-non-ecm-data (type data, field t4-non-ecm-data), then the data.
    let ifp = |v: &mut Vec<u8>| {
        v.push(18);
        v.extend_from_slice(&[0xC0, 0x01]);
        v.extend_from_slice(data);
    };
    ifp(&mut v);
    // Error recovery: one secondary IFP.
    v.extend_from_slice(&[0x00, 0x01]);
    ifp(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(at: f64, back: Option<f64>) -> FaxOptions {
        FaxOptions {
            t38_at: Some(at),
            t38_back_at: back,
            t38_sdp: "replace".into(),
        }
    }

    #[test]
    fn the_plan_covers_the_fax_stretch() {
        let p = FaxPlan::new(&opts(2.0, Some(4.0)), 20, 500)
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            FaxPlan {
                start_k: 100,
                back_k: Some(200)
            }
        );
        assert!(!p.is_fax(99) && p.is_fax(100) && p.is_fax(199) && !p.is_fax(200));
        assert!(FaxPlan::new(&opts(20.0, None), 20, 500).is_err());
        assert!(FaxPlan::new(&opts(2.0, Some(1.0)), 20, 500).is_err());
        assert_eq!(FaxPlan::new(&FaxOptions::default(), 20, 500).unwrap(), None);
    }

    #[test]
    fn sdp_styles() {
        let ip = Ipv4Addr::new(10, 1, 0, 1);
        let r = t38_sdp(ip, 20000, Law::Mu, 20, "replace");
        assert!(r.contains("m=image 20000 udptl t38") && !r.contains("m=audio"));
        let p = t38_sdp(ip, 20000, Law::Mu, 20, "port0");
        assert!(p.contains("m=audio 0 RTP/AVP 0\r\nm=image 20000 udptl t38"));
        let i = t38_sdp(ip, 20000, Law::Mu, 20, "inactive");
        assert!(
            i.contains("m=audio 20100 RTP/AVP") && i.contains("a=inactive"),
            "{i}"
        );
        assert!(i.contains("m=image 20000 udptl t38"));
    }

    #[test]
    fn udptl_layout() {
        let d = udptl(0x8001, &[7; 16]);
        assert_eq!(&d[..3], &[0x80, 0x01, 18]);
        assert_eq!(d.len(), 2 + 19 + 2 + 19);
    }
}
