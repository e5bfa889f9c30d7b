//! Classic pcap files (the libpcap format, microsecond or nanosecond, either byte order) read
//! without libpcap: a regular file is mapped into memory (no copy; the kernel reads ahead, and a
//! [`Pager`] thread maps the pages ahead of the reader and releases those behind it), anything
//! else is read in large reads into one buffer; records are parsed in place and frames
//! borrowed from the map or the buffer. It reads what libpcap's own file reader reads and refuses records as it does
//! (a captured length over the larger of the file's snap length and 262144; a record cut short
//! at the end of the file), with the same words. pcapng files, and any file read with a BPF
//! filter, stay with libpcap ([`super::file`]).

#![allow(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::path::Path;

use std::sync::Arc;

use memmap2::{Advice, Mmap};

use super::pager::{release_behind, Pager};
use super::Frame;
use crate::time::Timestamp;

/// Bytes read at a time once the file proves longer than the first read.
const READ_SIZE: usize = 4 << 20;
/// The first read: a whole largest record fits.
const FIRST_READ: usize = 512 << 10;
/// libpcap's largest snap length (MAXIMUM_SNAPLEN).
const MAXIMUM_SNAPLEN: u32 = 262_144;
const HEADER_LEN: usize = 24;
const RECORD_LEN: usize = 16;

/// Why a record could not be read (the words libpcap uses).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file ended inside a record.
    #[error("truncated dump file; tried to read {wanted} {what} bytes, only got {got}")]
    Truncated {
        /// Bytes the record needed.
        wanted: usize,
        /// `header` or `captured`.
        what: &'static str,
        /// Bytes there were.
        got: usize,
    },
    /// A record claims more bytes than any capture holds.
    #[error("invalid packet capture length {caplen}, bigger than snaplen of {snaplen}")]
    CapLen {
        /// The record's captured length.
        caplen: u32,
        /// The limit.
        snaplen: u32,
    },
    /// The operating system failed a read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where the file's bytes are.
enum Bytes {
    /// The whole file, mapped (shared with its pager).
    Mapped(Arc<Mmap>),
    /// What the reads brought so far.
    Read(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Read(v) => v,
        }
    }
}

/// An open classic pcap file (or any reader of one: the fuzz target reads memory).
pub struct ClassicPcap<R = File> {
    file: R,
    buf: Bytes,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// A mapped file's bytes before this are released (by the reader: no pager).
    released: usize,
    /// The thread mapping a mapped file's pages ahead and releasing them behind.
    pager: Option<Pager>,
    swapped: bool,
    nanos: bool,
    snaplen: u32,
    linktype: u32,
}

impl ClassicPcap<File> {
    /// Opens `path` if it is a classic pcap file; `Ok(None)` for anything else (pcapng, not a
    /// capture: libpcap names those). A regular file is mapped: one that another process
    /// truncates while it is read ends this process (SIGBUS), as with any mapped file; growing
    /// is harmless (what was there at open is read).
    pub fn open(path: &Path) -> std::io::Result<Option<Self>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let Some(mut reader) = ClassicPcap::from_reader(file)? else {
            return Ok(None);
        };
        if reader.file.metadata()?.is_file() && len > HEADER_LEN as u64 {
            // SAFETY: a private read-only map of a file this process opened read-only; its
            // bytes are only read, through the bounds-checked slice of `Bytes::as_slice`.
            let map = unsafe { Mmap::map(&reader.file)? };
            // Advice only: a kernel that ignores it reads the file all the same.
            let _ = map.advise(Advice::Sequential);
            reader.end = map.len();
            reader.start = HEADER_LEN;
            reader.eof = true;
            let map = Arc::new(map);
            // No thread (the process is at its limit): the reader releases the pages itself.
            reader.pager = Pager::start(map.clone(), HEADER_LEN).ok();
            reader.buf = Bytes::Mapped(map);
        }
        Ok(Some(reader))
    }
}

impl<R: Read> ClassicPcap<R> {
    /// Reads the file header from `file`; `Ok(None)` when it is not a classic pcap file.
    pub fn from_reader(mut file: R) -> std::io::Result<Option<Self>> {
        let mut header = [0u8; HEADER_LEN];
        if read_full(&mut file, &mut header)? < HEADER_LEN {
            return Ok(None);
        }
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (swapped, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xd4c3_b2a1 => (true, false),
            0xa1b2_3c4d => (false, true),
            0x4d3c_b2a1 => (true, true),
            _ => return Ok(None),
        };
        let word = |at: usize| {
            let b = [header[at], header[at + 1], header[at + 2], header[at + 3]];
            if swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        Ok(Some(ClassicPcap {
            file,
            buf: Bytes::Read(vec![0; FIRST_READ]),
            start: 0,
            end: 0,
            eof: false,
            released: 0,
            pager: None,
            swapped,
            nanos,
            snaplen: word(16),
            // The low 16 bits; the rest are FCS flags.
            linktype: word(20) & 0xFFFF,
        }))
    }

    /// The file's link type (a LINKTYPE_ value; for the ones this product reads, the DLT).
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        if !self.fill(RECORD_LEN)? {
            let got = self.end - self.start;
            if got == 0 {
                return Ok(None);
            }
            return Err(ReadError::Truncated {
                wanted: RECORD_LEN,
                what: "header",
                got,
            });
        }
        let h = &self.buf.as_slice()[self.start..self.start + RECORD_LEN];
        let word = |at: usize| {
            let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
            if self.swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (secs, frac, caplen, len) = (word(0), word(4), word(8), word(12));
        let limit = self.snaplen.max(MAXIMUM_SNAPLEN);
        if caplen > limit {
            return Err(ReadError::CapLen {
                caplen,
                snaplen: limit,
            });
        }
        let total = RECORD_LEN + caplen as usize;
        if !self.fill(total)? {
            return Err(ReadError::Truncated {
                wanted: caplen as usize,
                what: "captured",
                got: self.end - self.start - RECORD_LEN,
            });
        }
        let frac = if self.nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        let at = self.start + RECORD_LEN;
        self.release_read_pages();
        self.start += total;
        Ok(Some(Frame {
            ts: Timestamp::from_nanos(i64::from(secs) * 1_000_000_000 + frac),
            data: &self.buf.as_slice()[at..at + caplen as usize],
            wire_len: len,
        }))
    }

    /// Tells the pager (or, without one, the kernel) that a mapped file's pages before the
    /// current record will not be read again: no frame handed out earlier is still borrowed.
    fn release_read_pages(&mut self) {
        if let Some(pager) = &mut self.pager {
            pager.reader_at(self.start);
        } else if let Bytes::Mapped(map) = &self.buf {
            release_behind(map, &mut self.released, self.start);
        }
    }

    /// Makes `n` unread bytes available if the file has them.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        let Bytes::Read(buf) = &mut self.buf else {
            return Ok(false);
        };
        if self.eof {
            return Ok(false);
        }
        // Move the unread tail to the front, then read to fill the buffer (grown to its full
        // size once a file needs a second read).
        if self.end > 0 && buf.len() < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
        buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let got = read_full(&mut self.file, &mut buf[self.end..])?;
        self.end += got;
        if self.end < buf.len() {
            self.eof = true;
        }
        Ok(self.end >= n)
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(u32, u32, &[u8])], magic: u32, big: bool) -> tempfile::NamedTempFile {
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&w(magic));
        bytes.extend_from_slice(&[2, 0, 4, 0]);
        for v in [0, 0, 65535, 1] {
            bytes.extend_from_slice(&w(v));
        }
        for (s, f, data) in records {
            for v in [*s, *f, data.len() as u32, data.len() as u32 + 4] {
                bytes.extend_from_slice(&w(v));
            }
            bytes.extend_from_slice(data);
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &bytes).unwrap();
        f
    }

    #[test]
    fn both_byte_orders_and_precisions() {
        for (magic, nanos) in [(0xa1b2_c3d4u32, false), (0xa1b2_3c4d, true)] {
            for big in [false, true] {
                let f = file(&[(10, 5, b"abc"), (11, 0, b"")], magic, big);
                let mut r = ClassicPcap::open(f.path()).unwrap().unwrap();
                assert_eq!(r.linktype(), 1);
                let a = r.next_frame().unwrap().unwrap();
                let want = 10_000_000_000 + if nanos { 5 } else { 5000 };
                assert_eq!(
                    (a.ts.as_nanos(), a.data, a.wire_len),
                    (want, &b"abc"[..], 7)
                );
                let b = r.next_frame().unwrap().unwrap();
                assert_eq!((b.data.len(), b.wire_len), (0, 4));
                assert!(r.next_frame().unwrap().is_none());
            }
        }
    }

    #[test]
    fn cut_and_impossible_records_are_errors_in_libpcap_words() {
        let f = file(&[(1, 0, b"abcd")], 0xa1b2_c3d4, false);
        let bytes = std::fs::read(f.path()).unwrap();
        let cut = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cut.path(), &bytes[..bytes.len() - 1]).unwrap();
        let mut r = ClassicPcap::open(cut.path()).unwrap().unwrap();
        let e = r.next_frame().unwrap_err().to_string();
        assert_eq!(
            e,
            "truncated dump file; tried to read 4 captured bytes, only got 3"
        );
        std::fs::write(cut.path(), &bytes[..HEADER_LEN + 5]).unwrap();
        let mut r = ClassicPcap::open(cut.path()).unwrap().unwrap();
        assert!(r
            .next_frame()
            .unwrap_err()
            .to_string()
            .contains("16 header bytes, only got 5"));
        let mut huge = bytes[..HEADER_LEN].to_vec();
        for v in [1u32, 0, 0x7fff_ffff, 0x7fff_ffff] {
            huge.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(cut.path(), &huge).unwrap();
        let mut r = ClassicPcap::open(cut.path()).unwrap().unwrap();
        let e = r.next_frame().unwrap_err().to_string();
        assert!(
            e.contains("invalid packet capture length 2147483647"),
            "{e}"
        );
    }

    #[test]
    fn records_across_many_reads_and_other_formats_are_declined() {
        let data = vec![0x42u8; 1500];
        let records: Vec<(u32, u32, &[u8])> = (0..5000).map(|i| (i, 0, &data[..])).collect();
        let f = file(&records, 0xa1b2_c3d4, false);
        let mut r = ClassicPcap::open(f.path()).unwrap().unwrap();
        let mut n = 0;
        while let Some(fr) = r.next_frame().unwrap() {
            assert_eq!(fr.ts.as_nanos(), i64::from(n) * 1_000_000_000);
            assert_eq!(fr.data.len(), 1500);
            n += 1;
        }
        assert_eq!(n, 5000);
        let png = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(png.path(), [0x0a, 0x0d, 0x0d, 0x0a].repeat(10)).unwrap();
        assert!(ClassicPcap::open(png.path()).unwrap().is_none());
    }
}
