//! Live capture on a network interface through libpcap, and frame injection (vlantest's sender).
//!
//! libpcap's default TPACKET_V3 ring is kept (immediate mode switches Linux to TPACKET_V2, which
//! drops under load); a short packet timeout bounds how long a frame may wait in the ring.

use std::time::Duration;

use super::{Error, Frame};
use crate::packet::LinkType;
use crate::time::Timestamp;

/// How to open an interface.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Promiscuous mode (a SPAN NIC needs it: mirrored frames are not addressed to it).
    pub promiscuous: bool,
    /// Bytes kept per frame.
    pub snaplen: i32,
    /// Kernel ring size in bytes.
    pub buffer_bytes: i32,
    /// Longest a frame may wait in the ring before it is handed up.
    pub timeout: Duration,
    /// Optional BPF expression.
    pub filter: Option<String>,
    /// Non-blocking reads: [`LiveCapture::poll_frame`] returns `None` at once when nothing is
    /// buffered (libpcap's TPACKET_V3 timeout does not fire while no packet at all arrives, so a
    /// shell that must notice deadlines polls in this mode and sleeps between empty polls).
    pub nonblocking: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            promiscuous: true,
            snaplen: 65535,
            buffer_bytes: 64 << 20,
            timeout: Duration::from_millis(5),
            filter: None,
            nonblocking: false,
        }
    }
}

/// Why an interface could not be opened, sorted for the user's next step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpenFailure {
    /// No such interface.
    NoSuchInterface,
    /// Not root and no CAP_NET_RAW.
    PermissionDenied,
    /// The interface is down.
    InterfaceDown,
    /// Anything else libpcap reported.
    Other,
}

/// Live-capture errors.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Opening the interface failed.
    #[error("cannot capture on {iface}: {message}{}", hint(*.kind))]
    Open {
        /// Interface name.
        iface: String,
        /// Sorted cause.
        kind: OpenFailure,
        /// libpcap's message.
        message: String,
    },
    /// Filter, read or send failure.
    #[error(transparent)]
    Capture(#[from] Error),
    /// Sending a frame failed.
    #[error("cannot send on {iface}: {message}")]
    Send {
        /// Interface name.
        iface: String,
        /// libpcap's message.
        message: String,
    },
}

fn hint(kind: OpenFailure) -> &'static str {
    match kind {
        OpenFailure::NoSuchInterface => " (no such interface: list them with `ip link`)",
        OpenFailure::PermissionDenied => {
            " (capturing needs root or CAP_NET_RAW: run as root, or `setcap cap_net_raw+ep` the binary)"
        }
        OpenFailure::InterfaceDown => " (the interface is down: `ip link set IFACE up`)",
        OpenFailure::Other => "",
    }
}

fn classify(message: &str) -> OpenFailure {
    let m = message.to_ascii_lowercase();
    if m.contains("no such device")
        || m.contains("doesn't exist")
        || m.contains("no such interface")
    {
        OpenFailure::NoSuchInterface
    } else if m.contains("permission") || m.contains("not permitted") {
        OpenFailure::PermissionDenied
    } else if m.contains("network is down") || m.contains("is not up") {
        OpenFailure::InterfaceDown
    } else {
        OpenFailure::Other
    }
}

/// Kernel and interface counters (pcap_stats).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Frames the capture received.
    pub received: u64,
    /// Frames dropped because the ring was full.
    pub dropped: u64,
    /// Frames dropped by the interface or driver.
    pub if_dropped: u64,
    /// Times the capture was reopened after its interface failed (see `capture::reopen`).
    pub reopened: u64,
}

/// An open live capture.
pub struct LiveCapture {
    capture: pcap::Capture<pcap::Active>,
    iface: String,
    link: LinkType,
}

impl LiveCapture {
    /// Opens `iface` for capture.
    pub fn open(iface: &str, options: &LiveOptions) -> Result<Self, LiveError> {
        let open_err = |e: pcap::Error| {
            let message = e.to_string();
            LiveError::Open {
                iface: iface.to_owned(),
                kind: classify(&message),
                message,
            }
        };
        let timeout_ms = options.timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut capture = pcap::Capture::from_device(iface)
            .map_err(open_err)?
            .promisc(options.promiscuous)
            .snaplen(options.snaplen)
            .buffer_size(options.buffer_bytes)
            .timeout(timeout_ms)
            .precision(pcap::Precision::Nano)
            .open()
            .map_err(open_err)?;
        if options.nonblocking {
            capture = capture.setnonblock().map_err(open_err)?;
        }
        if let Some(f) = &options.filter {
            capture.filter(f, true).map_err(|e| Error::Filter {
                filter: f.clone(),
                message: e.to_string(),
            })?;
        }
        let link = LinkType::from_dlt(capture.get_datalink().0);
        Ok(LiveCapture {
            capture,
            iface: iface.to_owned(),
            link,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.iface
    }

    /// Link type of the interface.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The next frame, or `None` when the packet timeout passed (or, non-blocking, when nothing
    /// is buffered).
    pub fn poll_frame(&mut self) -> Result<Option<Frame<'_>>, LiveError> {
        match self.capture.next_packet() {
            Ok(p) => Ok(Some(Frame {
                ts: Timestamp::from_nanos(
                    #[allow(clippy::unnecessary_cast)]
                    super::timeval_nanos(p.header.ts.tv_sec as i64, p.header.ts.tv_usec as i64),
                ),
                data: p.data,
                wire_len: p.header.len,
            })),
            Err(pcap::Error::TimeoutExpired) => Ok(None),
            Err(e) => Err(Error::Read {
                source_name: self.iface.clone(),
                packets: 0,
                message: e.to_string(),
            }
            .into()),
        }
    }

    /// Kernel counters so far.
    pub fn stats(&mut self) -> Result<LiveStats, LiveError> {
        let s = self.capture.stats().map_err(|e| Error::Read {
            source_name: self.iface.clone(),
            packets: 0,
            message: e.to_string(),
        })?;
        Ok(LiveStats {
            received: s.received as u64,
            dropped: s.dropped as u64,
            if_dropped: s.if_dropped as u64,
            reopened: 0,
        })
    }

    /// Sends one frame out of the interface.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), LiveError> {
        self.capture.sendpacket(frame).map_err(|e| LiveError::Send {
            iface: self.iface.clone(),
            message: e.to_string(),
        })
    }
}

/// The MAC address of `iface` (from sysfs), for messages and `vlantest self`.
pub fn interface_mac(iface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    parse_mac(text.trim())
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_format() {
        let m = parse_mac("02:53:4D:56:54:01").unwrap();
        assert_eq!(m, [2, 0x53, 0x4d, 0x56, 0x54, 1]);
        assert_eq!(format_mac(&m), "02:53:4d:56:54:01");
        assert_eq!(parse_mac("02-53-4d-56-54-01"), Some(m));
        assert_eq!(parse_mac("02:53:4d:56:54"), None);
        assert_eq!(parse_mac("02:53:4d:56:54:01:02"), None);
        assert_eq!(parse_mac("zz:53:4d:56:54:01"), None);
    }

    #[test]
    fn open_failures_are_sorted() {
        assert_eq!(
            classify("eth9: No such device exists"),
            OpenFailure::NoSuchInterface
        );
        assert_eq!(
            classify("socket: Operation not permitted"),
            OpenFailure::PermissionDenied
        );
        assert_eq!(
            classify("eth0: That device is not up"),
            OpenFailure::InterfaceDown
        );
        let e = LiveCapture::open("silentmon-no-such0", &LiveOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("silentmon-no-such0"), "{e}");
    }
}
