//! Classic pcap files (LINKTYPE_ETHERNET, microsecond timestamps) written through a buffer.

use std::io::{self, Write};

/// A pcap file being written.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&65535u32.to_le_bytes())?; // snaplen
        out.write_all(&1u32.to_le_bytes())?; // Ethernet
        Ok(PcapWriter { out })
    }

    /// Writes one frame captured at `micros` since the epoch.
    pub fn write(&mut self, micros: i64, frame: &[u8]) -> io::Result<()> {
        let secs = micros.div_euclid(1_000_000) as u32;
        let us = micros.rem_euclid(1_000_000) as u32;
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&us.to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.out.write_all(frame)
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000, &[1, 2, 3]).unwrap();
        let v = w.finish().unwrap();
        assert_eq!(v.len(), 24 + 16 + 3);
        assert_eq!(&v[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(v[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(v[24..28].try_into().unwrap()), 1); // seconds
        assert_eq!(u32::from_le_bytes(v[28..32].try_into().unwrap()), 500_000);
        assert_eq!(&v[40..], &[1, 2, 3]);
    }
}
