//! Capture files: classic pcap read by [`super::classic`] (large reads, no stdio), pcapng and
//! any file read with a BPF filter through libpcap with nanosecond timestamps.

use std::path::{Path, PathBuf};

use super::classic::ClassicPcap;
use super::{Error, Frame, PacketSource};
use crate::packet::LinkType;
use crate::time::Timestamp;

/// Per-record overhead used to estimate the file position (pcap record header size).
const RECORD_HEADER_LEN: u64 = 16;

/// Who reads the file.
enum Reader {
    Classic(ClassicPcap),
    Libpcap(pcap::Capture<pcap::Offline>),
}

/// A pcap or pcapng file.
pub struct PcapFile {
    reader: Reader,
    path: PathBuf,
    link: LinkType,
    packets: u64,
    position: u64,
}

impl PcapFile {
    /// Opens `path`; `filter` is an optional BPF expression applied by libpcap.
    pub fn open(path: &Path, filter: Option<&str>) -> Result<Self, Error> {
        let open_error = |e: &dyn std::fmt::Display| Error::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if filter.is_none() {
            if let Some(classic) = ClassicPcap::open(path).map_err(|e| open_error(&e))? {
                return Ok(PcapFile {
                    link: LinkType::from_dlt(classic.linktype() as i32),
                    reader: Reader::Classic(classic),
                    path: path.to_owned(),
                    packets: 0,
                    position: 24,
                });
            }
        }
        let mut capture = pcap::Capture::from_file_with_precision(path, pcap::Precision::Nano)
            .map_err(|e| Error::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        if let Some(f) = filter {
            capture.filter(f, true).map_err(|e| Error::Filter {
                filter: f.to_owned(),
                message: e.to_string(),
            })?;
        }
        let link = LinkType::from_dlt(capture.get_datalink().0);
        Ok(PcapFile {
            reader: Reader::Libpcap(capture),
            path: path.to_owned(),
            link,
            packets: 0,
            position: 24,
        })
    }
}

impl PacketSource for PcapFile {
    fn link_type(&self) -> LinkType {
        self.link
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        let capture = match &mut self.reader {
            Reader::Libpcap(c) => c,
            Reader::Classic(r) => {
                return match r.next_frame() {
                    Ok(Some(f)) => {
                        self.packets += 1;
                        self.position += RECORD_HEADER_LEN + f.data.len() as u64;
                        Ok(Some(f))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(Error::Read {
                        source_name: self.path.display().to_string(),
                        packets: self.packets,
                        message: e.to_string(),
                    }),
                };
            }
        };
        match capture.next_packet() {
            Ok(p) => {
                self.packets += 1;
                self.position += RECORD_HEADER_LEN + p.header.caplen as u64;
                // With nanosecond precision libpcap puts nanoseconds in tv_usec.
                let ts = Timestamp::from_nanos(
                    #[allow(clippy::unnecessary_cast)]
                    super::timeval_nanos(p.header.ts.tv_sec as i64, p.header.ts.tv_usec as i64),
                );
                Ok(Some(Frame {
                    ts,
                    data: p.data,
                    wire_len: p.header.len,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(Error::Read {
                source_name: self.path.display().to_string(),
                packets: self.packets,
                message: e.to_string(),
            }),
        }
    }

    fn position(&self) -> u64 {
        self.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/public")
            .join(name)
    }

    #[test]
    fn reads_pcap_and_pcapng_with_filter() {
        let mut f = PcapFile::open(&public("sipp-g711a.pcap"), None).unwrap();
        assert_eq!(f.link_type(), LinkType::Ethernet);
        let mut n = 0;
        let mut last = Timestamp::ZERO;
        while let Some(fr) = f.next_frame().unwrap() {
            assert!(fr.ts >= last);
            last = fr.ts;
            n += 1;
        }
        assert_eq!(n, 236);

        // pcapng, and a filter that must say `vlan` to see tagged frames.
        let path = public("ndpi-rtp-vlan-opus.pcapng");
        let count = |filter| {
            let mut f = PcapFile::open(&path, filter).unwrap();
            let mut n = 0;
            while f.next_frame().unwrap().is_some() {
                n += 1;
            }
            n
        };
        let all = count(None);
        assert_eq!(all, 112);
        let untagged_udp = count(Some("udp"));
        let any_udp = count(Some("udp or (vlan and udp)"));
        assert!(any_udp > untagged_udp, "{any_udp} vs {untagged_udp}");
    }

    #[test]
    fn errors_name_the_file_and_filter() {
        let e = PcapFile::open(Path::new("/nonexistent.pcap"), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent.pcap"));
        let e = PcapFile::open(&public("sipp-g711a.pcap"), Some("udp and and"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("udp and and"), "{e}");
    }
}
