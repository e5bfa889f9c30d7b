//! vlantest's thin shells over libpcap: listen on a NIC (or read a file) and feed a
//! [`Judge`], send the signed sample frames (or a file's frames, rewritten). Every decision is
//! the judge's (`vlantest::verdict`); nothing here interprets frames.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::report::{Judge, RunReport, FILE_TAG_PATH, LIVE_TAG_PATH};
use super::sample::{build_frame, set_dst_mac, strip_tags};
use super::{observe, Expectation, Signature};
use crate::capture::live::{format_mac, interface_mac, LiveCapture, LiveError, LiveOptions};
use crate::capture::{PacketSource, PcapFile};
use crate::packet::{DecapConfig, Decapsulator, LinkType};

/// testdata/VLANSamplePackets.pcap (made by tools/capgen), the default frames of `send`.
const SAMPLE_CAPTURE: &[u8] = include_bytes!("../../testdata/VLANSamplePackets.pcap");

/// Why a vlantest shell failed (not a FAIL verdict: the test could not run).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The interface could not be opened or used.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// A capture file could not be read.
    #[error(transparent)]
    Capture(#[from] crate::capture::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The capture to send holds no frames.
    #[error("{0} holds no frames")]
    NoFrames(PathBuf),
    /// Only Ethernet frames can be sent.
    #[error("{0}: only Ethernet captures can be sent")]
    NotEthernet(PathBuf),
}

/// What `send` sends.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// VLAN id to tag the sample frames with.
    pub vlan: u16,
    /// Send the frames without a tag.
    pub untagged: bool,
    /// Frames to send.
    pub count: u16,
    /// Pause between frames.
    pub interval: Duration,
    /// Send the frames of this capture instead of the built-in sample.
    pub from: Option<PathBuf>,
}

/// Listens on `iface` until `count` tagged frames arrived or `timeout` passed. `ready`, if
/// given, is told once the capture is open (so `self` starts sending only then).
pub fn listen(
    iface: &str,
    exp: Expectation,
    timeout: Duration,
    json: bool,
    ready: Option<std::sync::mpsc::SyncSender<()>>,
) -> Result<RunReport, Error> {
    let options = LiveOptions {
        snaplen: 512,
        buffer_bytes: 4 << 20,
        timeout: Duration::from_millis(50),
        nonblocking: true,
        ..LiveOptions::default()
    };
    let mut cap = LiveCapture::open(iface, &options)?;
    let link = cap.link_type();
    if !json {
        let mac = interface_mac(iface)
            .map(|m| format_mac(&m))
            .unwrap_or_else(|| "unknown".into());
        println!(
            "listening on {iface} (MAC {mac}) for {} frames tagged with VLAN {}, up to {:?}",
            exp.count, exp.vlan, timeout
        );
    }
    if let Some(r) = ready {
        let _ = r.send(());
    }
    let mut judge = Judge::new(exp, json);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !judge.is_complete() {
        let Some(frame) = cap.poll_frame()? else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        judge.frame(frame.ts, link, frame.data);
    }
    Ok(judge.report(iface.to_owned(), LIVE_TAG_PATH))
}

/// Judges the frames of a capture file.
pub fn judge_file(path: &Path, exp: Expectation, json: bool) -> Result<RunReport, Error> {
    let mut file = PcapFile::open(path, None)?;
    let link = file.link_type();
    let mut judge = Judge::new(exp, json);
    while let Some(frame) = file.next_frame()? {
        judge.frame(frame.ts, link, frame.data);
    }
    Ok(judge.report(path.display().to_string(), FILE_TAG_PATH))
}

/// Sends the sample frames (or a file's frames); returns how many were sent.
pub fn send(iface: &str, dst_mac: [u8; 6], opts: &SendOptions) -> Result<usize, Error> {
    let frames = sample_frames(dst_mac, opts)?;
    let mut cap = LiveCapture::open(
        iface,
        &LiveOptions {
            promiscuous: false,
            snaplen: 128,
            buffer_bytes: 1 << 20,
            ..LiveOptions::default()
        },
    )?;
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(opts.interval);
        }
        cap.send(f)?;
    }
    Ok(frames.len())
}

/// The frames to send: generated sample frames, or those of `--from FILE` rewritten.
fn sample_frames(dst_mac: [u8; 6], opts: &SendOptions) -> Result<Vec<Vec<u8>>, Error> {
    let test_id = test_id();
    let sent_vlan = (!opts.untagged).then_some(opts.vlan);
    // The default is the project's own sample capture, embedded in the binary; libpcap reads
    // files, so it goes through a private temporary copy.
    let embedded;
    let path: &Path = match &opts.from {
        Some(p) => p,
        None => {
            embedded = std::env::temp_dir()
                .join(format!("silentmon-vlan-sample-{}.pcap", std::process::id()));
            std::fs::write(&embedded, SAMPLE_CAPTURE).map_err(|source| Error::Write {
                path: embedded.clone(),
                source,
            })?;
            &embedded
        }
    };
    let frames = read_frames(path);
    if opts.from.is_none() {
        let _ = std::fs::remove_file(path);
    }
    let frames = frames?;
    if frames.is_empty() {
        return Err(Error::NoFrames(path.to_owned()));
    }
    // `count` frames, cycling through the file; sample frames are re-signed for this run with
    // their position, and tagged as asked.
    let mut decap = Decapsulator::new(DecapConfig::default());
    let mut out = Vec::with_capacity(opts.count as usize);
    for seq in 0..opts.count {
        let (ts, data) = &frames[seq as usize % frames.len()];
        let obs = observe(&mut decap, *ts, LinkType::Ethernet, data);
        let mut f = match obs.signature {
            Some(_) => {
                let mut f = Vec::new();
                let sig = Signature {
                    test_id,
                    seq,
                    count: opts.count,
                    sent_vlan,
                };
                build_frame(&mut f, dst_mac, obs.src_mac, &sig);
                f
            }
            None => {
                let mut f = data.clone();
                if opts.untagged {
                    strip_tags(&mut f);
                }
                f
            }
        };
        set_dst_mac(&mut f, dst_mac);
        out.push(f);
    }
    Ok(out)
}

/// All frames of an Ethernet capture file.
fn read_frames(path: &Path) -> Result<Vec<(crate::time::Timestamp, Vec<u8>)>, Error> {
    let mut file = PcapFile::open(path, None)?;
    if file.link_type() != LinkType::Ethernet {
        return Err(Error::NotEthernet(path.to_owned()));
    }
    let mut frames = Vec::new();
    while let Some(frame) = file.next_frame()? {
        frames.push((frame.ts, frame.data.to_vec()));
    }
    Ok(frames)
}

/// A test id that differs between runs (time-derived; not security relevant).
fn test_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u32) ^ std::process::id().rotate_left(16)
}
