//! A capture file replayed as live traffic: frames come out at their original pace (scaled by
//! `speed`), stamped with the wall-clock time they are due (the replay's start plus their
//! scaled offset in the file, so the original spacing is kept exactly even when the thread is
//! late), optionally looping. This is how the
//! appliance runs without a SPAN port (the README's main command, the tests). A shell: it sleeps.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Error, Frame, PacketSource, PcapFile};
use crate::packet::LinkType;
use crate::time::{Span, Timestamp};

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// 1.0 = original pace, 2.0 = twice as fast; 0 or less = as fast as possible.
    pub speed: f64,
    /// Start again at the end (forever).
    pub looped: bool,
    /// Hold the first frame until this is set (the demo starts the call once its supervisor
    /// listens); None: start at once.
    pub gate: Option<Arc<AtomicBool>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            speed: 1.0,
            looped: false,
            gate: None,
        }
    }
}

/// A paced replay of a capture file.
pub struct Replay {
    path: PathBuf,
    filter: Option<String>,
    options: ReplayOptions,
    file: PcapFile,
    /// Wall clock, capture time of the file's first frame, and the stamp given to it.
    started: Option<(Instant, Timestamp, Timestamp)>,
    /// Capture time of the last frame handed up (for the next pass's offset).
    last_capture: Timestamp,
    /// Length of the passes already replayed.
    pass_offset: Span,
    passes: u64,
    /// The frame read but not handed up yet: its stamp, wire length and when it is due.
    pending: Option<(Timestamp, u32, Instant)>,
    buf: Vec<u8>,
}

impl Replay {
    /// Opens `path` for replay.
    pub fn open(path: &Path, filter: Option<&str>, options: ReplayOptions) -> Result<Self, Error> {
        Ok(Replay {
            path: path.to_owned(),
            filter: filter.map(str::to_owned),
            options,
            file: PcapFile::open(path, filter)?,
            started: None,
            last_capture: Timestamp::ZERO,
            pass_offset: Span::from_nanos(0),
            passes: 0,
            pending: None,
            buf: Vec::with_capacity(2048),
        })
    }

    /// Completed passes over the file.
    pub fn passes(&self) -> u64 {
        self.passes
    }
}

/// What [`Replay::advance`] found.
enum Step {
    /// The pending frame is due: hand it up.
    Ready,
    /// The pending frame is due in this long.
    Wait(Duration),
    /// The file is finished (and not looping).
    End,
}

/// Longest single wait `poll` reports, so a stop request is seen soon.
const MAX_WAIT: Duration = Duration::from_millis(5);

impl Replay {
    /// Reads the next frame into the pending slot if it is empty, and says when it is due.
    fn advance(&mut self) -> Result<Step, Error> {
        if self.started.is_none()
            && self
                .options
                .gate
                .as_ref()
                .is_some_and(|g| !g.load(Ordering::Acquire))
        {
            return Ok(Step::Wait(MAX_WAIT));
        }
        if self.pending.is_none() {
            let (ts, wire_len) = loop {
                match self.file.next_frame()? {
                    Some(f) => {
                        self.buf.clear();
                        self.buf.extend_from_slice(f.data);
                        break (f.ts, f.wire_len);
                    }
                    None => {
                        self.passes += 1;
                        if !self.options.looped {
                            return Ok(Step::End);
                        }
                        self.file = PcapFile::open(&self.path, self.filter.as_deref())?;
                        // The next pass starts where this one ended.
                        if let Some((_, first, _)) = self.started {
                            self.pass_offset = Span::from_nanos(
                                self.pass_offset.as_nanos()
                                    + (self.last_capture - first).as_nanos(),
                            );
                        }
                    }
                }
            };
            let (wall0, first, stamp0) =
                *self
                    .started
                    .get_or_insert((Instant::now(), ts, crate::clock::wall_now()));
            let offset = Span::from_nanos((ts - first).as_nanos() + self.pass_offset.as_nanos());
            self.last_capture = ts;
            let speed = self.options.speed;
            let scaled = if speed > 0.0 {
                Span::from_nanos((offset.as_nanos() as f64 / speed) as i64)
            } else {
                Span::from_nanos(0)
            };
            let due = wall0 + Duration::from_nanos(scaled.as_nanos().max(0) as u64);
            self.pending = Some((stamp0 + scaled, wire_len, due));
        }
        let (_, _, due) = self.pending.expect("filled above");
        let now = Instant::now();
        Ok(if self.options.speed > 0.0 && due > now {
            Step::Wait(due - now)
        } else {
            Step::Ready
        })
    }

    fn take_pending(&mut self) -> Frame<'_> {
        let (ts, wire_len, _) = self.pending.take().expect("advance said Ready");
        Frame {
            ts,
            data: &self.buf,
            wire_len,
        }
    }

    /// The next frame if it is due, else how long until it is (at most a few ms), or the end.
    /// For the capture thread, which hands over what it holds while the replay waits.
    pub fn poll(&mut self) -> Result<super::pipeline::Poll<'_>, Error> {
        use super::pipeline::Poll;
        Ok(match self.advance()? {
            Step::Ready => Poll::Frame(self.take_pending()),
            Step::Wait(d) => Poll::Idle(d.min(MAX_WAIT)),
            Step::End => Poll::End,
        })
    }
}

impl PacketSource for Replay {
    fn link_type(&self) -> LinkType {
        self.file.link_type()
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        loop {
            match self.advance()? {
                Step::Ready => break,
                Step::Wait(d) => std::thread::sleep(d),
                Step::End => return Ok(None),
            }
        }
        Ok(Some(self.take_pending()))
    }

    fn position(&self) -> u64 {
        self.file.position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    #[test]
    fn replays_in_order_with_scaled_gaps_and_loops() {
        let path = testdata("VLANSamplePackets.pcap"); // 5 frames, 200 ms apart
        let mut r = Replay::open(
            &path,
            None,
            ReplayOptions {
                speed: 100.0,
                looped: true,
                ..ReplayOptions::default()
            },
        )
        .unwrap();
        let mut stamps = Vec::new();
        for _ in 0..12 {
            let f = r.next_frame().unwrap().unwrap();
            assert!(f.data.len() > 60);
            stamps.push(f.ts);
        }
        assert!(r.passes() >= 2);
        // Original 200 ms gaps at 100x: 2 ms apart in the stamps, also across the loop.
        for w in stamps.windows(2) {
            let gap = (w[1] - w[0]).as_nanos();
            assert!((0..=2_000_000).contains(&gap), "{gap}");
        }
        assert_eq!((stamps[4] - stamps[0]).as_nanos(), 8_000_000);
        // Passes follow each other: frame 10 (third pass, first frame) is 2 x 8 ms after frame 0.
        assert_eq!((stamps[10] - stamps[0]).as_nanos(), 16_000_000);
        // Without looping the replay ends.
        let mut once = Replay::open(
            &path,
            None,
            ReplayOptions {
                speed: 0.0,
                looped: false,
                ..ReplayOptions::default()
            },
        )
        .unwrap();
        let mut n = 0;
        while once.next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!((n, once.passes()), (5, 1));
    }
}
