//! Packet sources: the only code that touches libpcap.
//!
//! A [`PacketSource`] yields captured frames as `(Timestamp, &[u8])` with the link type of the
//! capture. [`file::PcapFile`] reads classic pcap files itself ([`classic`], a mapped file's
//! pages kept by a [`pager`] thread) and pcapng files, or any file with a BPF filter, through
//! libpcap (the same library the live capture uses, so BPF filters behave identically); [`live::LiveCapture`] opens an
//! interface, [`reopen::ReopeningCapture`] keeps one open through failures, [`replay::Replay`]
//! plays a file at its pace, and [`pipeline::Pipeline`] runs any of them on a capture thread.
//! Nothing here interprets packets.

use std::path::PathBuf;

use crate::packet::LinkType;
use crate::time::Timestamp;

pub mod classic;
pub mod file;
pub mod live;
pub mod pager;
pub mod pipeline;
pub mod reopen;
pub mod replay;

pub use file::PcapFile;

/// Capture errors: they name the file or interface and what libpcap said.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The capture file could not be opened or is not a pcap/pcapng file.
    #[error("cannot open capture file {path}: {message}")]
    Open {
        /// File path.
        path: PathBuf,
        /// libpcap's message.
        message: String,
    },
    /// A BPF filter did not compile.
    #[error("bad capture filter {filter:?}: {message}")]
    Filter {
        /// The filter text.
        filter: String,
        /// libpcap's message.
        message: String,
    },
    /// Reading failed part-way (truncated file, I/O error).
    #[error("reading {source_name} failed after {packets} packets: {message}")]
    Read {
        /// File or interface.
        source_name: String,
        /// Packets read before the failure.
        packets: u64,
        /// libpcap's message.
        message: String,
    },
}

/// One captured frame, borrowed from the source until the next call.
#[derive(Copy, Clone, Debug)]
pub struct Frame<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Captured bytes (at most the snap length).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub wire_len: u32,
}

/// A source of captured frames.
pub trait PacketSource {
    /// Link type of every frame of this source.
    fn link_type(&self) -> LinkType;

    /// The next frame, or `None` at the end of the source.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error>;

    /// Bytes consumed so far, for progress reports (an estimate for pcapng).
    fn position(&self) -> u64;
}

/// Reads a BPF filter file: `#` comments and blank lines dropped, the rest joined by spaces.
pub fn read_filter_file(text: &str) -> String {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nanoseconds from a `timeval` whose microsecond field holds nanoseconds (libpcap's nanosecond
/// precision). The casts are needed on platforms where `time_t`/`suseconds_t` are 32-bit.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn timeval_nanos(secs: i64, nanos: i64) -> i64 {
    secs * 1_000_000_000 + nanos
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_file_comments_and_lines() {
        let text = "# all RTP and SIP\nudp   # untagged\n\nor (vlan and udp)\n";
        assert_eq!(super::read_filter_file(text), "udp or (vlan and udp)");
    }
}
