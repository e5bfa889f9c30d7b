//! What a vlantest run reports: the verdict, the counts and the frames of interest, as JSON
//! or text, and the [`Judge`] that builds it from captured frames (pure: frames in, report out;
//! the shells feed it).

use serde::Serialize;

use super::{observe, Expectation, FrameClass, Observation, Tally, Verdict};
use crate::capture::live::format_mac;
use crate::packet::{DecapConfig, Decapsulator, LinkType};

/// What a listen (or file) run saw.
#[derive(Serialize)]
pub struct RunReport {
    /// The interface or file.
    pub source: String,
    /// What was expected.
    pub expected: Expectation,
    /// PASS or FAIL with its cause.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// How the tags reached us.
    pub tag_path: &'static str,
    /// The counts.
    pub tally: Tally,
    /// The frames of interest (at most [`MAX_FRAMES_LISTED`]).
    pub frames: Vec<FrameReport>,
}

/// One frame of interest.
#[derive(Serialize)]
pub struct FrameReport {
    time: String,
    src_mac: String,
    dst_mac: String,
    vlans: Vec<TagReport>,
    ethertype: String,
    ip_protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample: Option<SampleReport>,
    class: FrameClass,
}

/// One tag of a frame.
#[derive(Serialize)]
pub struct TagReport {
    tpid: String,
    id: u16,
    pcp: u8,
    dei: bool,
}

/// A sample frame's signature.
#[derive(Serialize)]
pub struct SampleReport {
    test_id: u32,
    seq: u16,
    sent_vlan: Option<u16>,
}

/// How tags reach a live capture.
pub const LIVE_TAG_PATH: &str = "live Linux capture: the kernel hands the outer tag up out of band (VLAN \
offload metadata) and libpcap puts it back into the frame, as tcpdump shows it; inner tags arrive in \
the frame itself";
/// How tags reach a file judgement.
pub const FILE_TAG_PATH: &str = "capture file: tags as recorded in the file";

/// Most frames listed in a report (the tally counts them all).
pub const MAX_FRAMES_LISTED: usize = 200;

fn frame_report(o: &Observation, class: FrameClass) -> FrameReport {
    FrameReport {
        time: format_time(o.ts),
        src_mac: format_mac(&o.src_mac),
        dst_mac: format_mac(&o.dst_mac),
        vlans: o
            .vlans
            .tags()
            .iter()
            .map(|t| TagReport {
                tpid: format!("0x{:04x}", t.tpid),
                id: t.vid,
                pcp: t.pcp,
                dei: t.dei,
            })
            .collect(),
        ethertype: format!("0x{:04x}", o.ethertype),
        ip_protocol: o.ip_protocol,
        sample: o.signature.map(|s| SampleReport {
            test_id: s.test_id,
            seq: s.seq,
            sent_vlan: s.sent_vlan,
        }),
        class,
    }
}

fn format_time(ts: crate::time::Timestamp) -> String {
    let secs = ts.as_nanos().div_euclid(1_000_000_000);
    let micros = ts.as_nanos().rem_euclid(1_000_000_000) / 1000;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

/// One frame as a text line.
pub fn frame_line(f: &FrameReport) -> String {
    let tags = if f.vlans.is_empty() {
        "untagged".to_owned()
    } else {
        f.vlans
            .iter()
            .map(|t| {
                format!(
                    "vlan {} pcp {} dei {} ({})",
                    t.id, t.pcp, t.dei as u8, t.tpid
                )
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let proto = match (f.ethertype.as_str(), f.ip_protocol) {
        ("0x0800", Some(17)) => "IPv4/UDP".to_owned(),
        ("0x0800", Some(p)) => format!("IPv4/proto {p}"),
        ("0x86dd", Some(17)) => "IPv6/UDP".to_owned(),
        (e, _) => format!("ethertype {e}"),
    };
    let sample = match &f.sample {
        Some(s) => format!(
            " sample #{} (sent {})",
            s.seq,
            s.sent_vlan
                .map(|v| format!("on vlan {v}"))
                .unwrap_or_else(|| "untagged".into())
        ),
        None => String::new(),
    };
    format!(
        "{} {} > {} {tags} {proto}{sample}: {:?}",
        f.time, f.src_mac, f.dst_mac, f.class
    )
}

/// Observes frames, tallies them and lists (and prints) the frames of interest.
pub struct Judge {
    exp: Expectation,
    json: bool,
    decap: Decapsulator,
    tally: Tally,
    frames: Vec<FrameReport>,
}

impl Judge {
    /// A judge of frames against `exp`; without `json` each frame of interest is printed as
    /// it comes.
    pub fn new(exp: Expectation, json: bool) -> Self {
        Judge {
            exp,
            json,
            decap: Decapsulator::new(DecapConfig::default()),
            tally: Tally::default(),
            frames: Vec::new(),
        }
    }

    /// One captured frame.
    pub fn frame(&mut self, ts: crate::time::Timestamp, link: LinkType, data: &[u8]) {
        let obs = observe(&mut self.decap, ts, link, data);
        let class = self.tally.observe(&self.exp, &obs);
        if class != FrameClass::Background && self.frames.len() < MAX_FRAMES_LISTED {
            let f = frame_report(&obs, class);
            if !self.json {
                println!("{}", frame_line(&f));
            }
            self.frames.push(f);
        }
    }

    /// True once enough tagged frames were seen.
    pub fn is_complete(&self) -> bool {
        self.tally.is_complete(&self.exp)
    }

    /// The report of what was judged.
    pub fn report(self, source: String, tag_path: &'static str) -> RunReport {
        RunReport {
            verdict: self.tally.verdict(&self.exp, &source),
            source,
            expected: self.exp,
            tag_path,
            tally: self.tally,
            frames: self.frames,
        }
    }
}

/// The report as text: the counts, the tag path and the verdict.
pub fn summary(report: &RunReport) -> String {
    let t = &report.tally;
    let mut out = format!(
        "{} frames seen: {} tagged with VLAN {}, {} stripped, {} re-tagged, {} other VLAN, {} untagged samples, {} background\n",
        t.frames, t.tagged, report.expected.vlan, t.stripped, t.retagged, t.other_vlan, t.untagged_as_sent, t.background
    );
    out += &format!("tag path: {}\n", report.tag_path);
    out += &match &report.verdict {
        Verdict::Pass => format!(
            "PASS: {} frames tagged with VLAN {} reached the capture stack on {}",
            t.tagged, report.expected.vlan, report.source
        ),
        Verdict::Fail { cause, diagnosis } => format!("FAIL ({cause:?}): {diagnosis}"),
    };
    out
}
