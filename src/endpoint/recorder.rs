//! Call recording on the supervisor's side: one 16-bit PCM WAV file per monitored call, at
//! the decode rate, mono (agent + caller summed, saturating) or stereo (agent left, caller
//! right), named `DIR/<agent>_<call-id>_<UTC YYYYmmddTHHMMSSZ>.wav`.
//!
//! The call id comes from the wire: everything but ASCII letters, digits, `-` and `.` becomes
//! `_`, and it is cut to 64 characters, so it can never leave `DIR`. The header is finalised
//! by [`Recorder::finish`], by the next [`Recorder::start_call`], or when the recorder is
//! dropped, so a caller that handles SIGINT only has to drop it for the file to stay valid.
//!
//! A call set aside unfinished ([`Recorder::suspend`]: the agent went to a consult call) keeps
//! its file: when the agent comes back to it, [`Recorder::start_call`] appends to that file
//! instead of starting another, so a call held for a consult is still one WAV.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::media::listen::{Layout, RenderedPcm};
use crate::time::Timestamp;

/// Longest call id kept in a file name.
const MAX_ID_LEN: usize = 64;
/// Most suspended calls whose files are remembered (the oldest is forgotten first).
const MAX_SUSPENDED: usize = 8;

/// Recorder errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WAV file could not be created, written or finalised.
    #[error("recording {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// hound's reason.
        source: hound::Error,
    },
    /// A write with a rate other than the recording's.
    #[error("recording {path} is at {file} Hz, got PCM at {got} Hz")]
    RateChanged {
        /// The file.
        path: PathBuf,
        /// The file's rate.
        file: u32,
        /// The rate written.
        got: u32,
    },
}

struct Open {
    call: (String, Timestamp),
    path: PathBuf,
    rate: u32,
    /// The file continues a suspended recording.
    resumed: bool,
    writer: hound::WavWriter<BufWriter<File>>,
}

/// A call's recording before its first samples: the file to create, or to append to.
enum Pending {
    New {
        call: (String, Timestamp),
        name: String,
    },
    Resume {
        call: (String, Timestamp),
        path: PathBuf,
    },
}

/// Records calls to WAV files in one directory.
pub struct Recorder {
    dir: PathBuf,
    layout: Layout,
    pending: Option<Pending>,
    open: Option<Open>,
    /// Calls (id, start) set aside unfinished, with their files, oldest first.
    suspended: Vec<((String, Timestamp), PathBuf)>,
}

/// `dir/name`, or `dir/<stem>-2.wav`, `-3`, ... when taken: a recording never overwrites
/// another (the same call heard again gets a file of its own).
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let stem = name.strip_suffix(".wav").unwrap_or(name);
    (2..)
        .map(|n| dir.join(format!("{stem}-{n}.wav")))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

impl Recorder {
    /// A recorder writing into `dir` (which must exist) with `layout`.
    pub fn new(dir: impl Into<PathBuf>, layout: Layout) -> Self {
        Recorder {
            dir: dir.into(),
            layout,
            pending: None,
            open: None,
            suspended: Vec::new(),
        }
    }

    /// Starts recording a call (finishing any previous one). The file is created by the first
    /// [`Recorder::write`], which knows the rate; its path is returned by [`Recorder::path`].
    /// A call [`Recorder::suspend`]ed before continues its file instead.
    pub fn start_call(
        &mut self,
        agent_id: &str,
        call_id: &str,
        start: Timestamp,
    ) -> Result<(), Error> {
        self.finish()?;
        // The same call: a reused Call-ID of a later call started at another time.
        let call = (call_id.to_owned(), start);
        if let Some(i) = self.suspended.iter().position(|(c, _)| *c == call) {
            let (call, path) = self.suspended.remove(i);
            self.pending = Some(Pending::Resume { call, path });
            return Ok(());
        }
        let name = format!(
            "{}_{}_{}.wav",
            sanitise(agent_id),
            sanitise(call_id),
            utc_compact(start)
        );
        self.pending = Some(Pending::New { call, name });
        Ok(())
    }

    /// Sets the current call aside unfinished: its file is finalised (valid on disk) and
    /// remembered, so that [`Recorder::start_call`] of the same call appends to it. Call when
    /// the agent moves to another call while this one goes on (a consult during a hold).
    pub fn suspend(&mut self) -> Result<(), Error> {
        self.pending = None;
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        open.writer.finalize().map_err(|source| Error::Wav {
            path: open.path.clone(),
            source,
        })?;
        self.suspended.retain(|(c, _)| *c != open.call);
        if self.suspended.len() >= MAX_SUSPENDED {
            self.suspended.remove(0);
        }
        self.suspended.push((open.call, open.path));
        Ok(())
    }

    /// The suspended call `call_id` ended without coming back (e.g. the agent transferred it
    /// during the consult): its file, already complete, is forgotten. False when no suspended
    /// call has this id.
    pub fn forget(&mut self, call_id: &str) -> bool {
        let before = self.suspended.len();
        self.suspended.retain(|((c, _), _)| c != call_id);
        self.suspended.len() != before
    }

    /// True when the file being written continues a suspended recording.
    pub fn resumed(&self) -> bool {
        self.open.as_ref().is_some_and(|o| o.resumed)
    }

    /// The file being written, once it exists.
    pub fn path(&self) -> Option<&Path> {
        self.open.as_ref().map(|o| o.path.as_path())
    }

    /// Appends `pcm` (both directions) to the current recording; ignored without a call.
    pub fn write(&mut self, pcm: &RenderedPcm) -> Result<(), Error> {
        if pcm.is_empty() || pcm.rate == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            let Some(pending) = self.pending.take() else {
                return Ok(());
            };
            let (call, path, resumed) = match pending {
                Pending::New { call, name } => (call, unused_path(&self.dir, &name), false),
                Pending::Resume { call, path } => (call, path, true),
            };
            let spec = hound::WavSpec {
                channels: self.layout.channels(),
                sample_rate: pcm.rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let writer = if resumed {
                hound::WavWriter::append(&path)
            } else {
                hound::WavWriter::create(&path, spec)
            }
            .map_err(|source| Error::Wav {
                path: path.clone(),
                source,
            })?;
            self.open = Some(Open {
                call,
                rate: writer.spec().sample_rate,
                path,
                resumed,
                writer,
            });
        }
        let layout = self.layout;
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if open.rate != pcm.rate {
            return Err(Error::RateChanged {
                path: open.path.clone(),
                file: open.rate,
                got: pcm.rate,
            });
        }
        let n = pcm.len();
        let result = (|| {
            for (a, c) in pcm.agent[..n].iter().zip(&pcm.caller[..n]) {
                match layout {
                    Layout::Mono => open.writer.write_sample(a.saturating_add(*c))?,
                    Layout::Stereo => {
                        open.writer.write_sample(*a)?;
                        open.writer.write_sample(*c)?;
                    }
                }
            }
            Ok(())
        })();
        result.map_err(|source| Error::Wav {
            path: open.path.clone(),
            source,
        })
    }

    /// Finalises the current recording's header and closes it (nothing to do without one);
    /// the call is over, so a later `start_call` of it starts a new file.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.pending = None;
        if let Some(open) = self.open.take() {
            open.writer.finalize().map_err(|source| Error::Wav {
                path: open.path,
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(error = %e, "recording not finalised");
        }
    }
}

/// Keeps ASCII letters, digits, `-` and `.`; everything else becomes `_`; at most 64 chars.
fn sanitise(id: &str) -> String {
    let s: String = id
        .chars()
        .take(MAX_ID_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // "." and ".." alone would be path components; a leading dot hides the file.
    match s.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if s.is_empty() => "_".to_string(),
        None => s,
    }
}

/// `YYYYmmddTHHMMSSZ` of a timestamp (proleptic Gregorian, UTC).
fn utc_compact(t: Timestamp) -> String {
    let secs = t.as_nanos().div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = crate::time::civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(rate: u32, n: usize, k: i16) -> RenderedPcm {
        RenderedPcm {
            rate,
            agent: (0..n).map(|i| (i as i16).wrapping_mul(k)).collect(),
            caller: (0..n).map(|i| -(i as i16)).collect(),
        }
    }

    #[test]
    fn names_and_dates() {
        assert_eq!(utc_compact(Timestamp::ZERO), "19700101T000000Z");
        // 2026-12-02 08:05:46 UTC.
        assert_eq!(
            utc_compact(Timestamp::from_nanos(1_796_198_746 * 1_000_000_000)),
            "20261202T080546Z"
        );
        // 2024-02-29 23:59:59 UTC (leap day).
        assert_eq!(
            utc_compact(Timestamp::from_nanos(1_709_251_199_999_999_999)),
            "20240229T235959Z"
        );
        assert_eq!(
            sanitise("a84b4c76e66710@pc33.atlanta.com"),
            "a84b4c76e66710_pc33.atlanta.com"
        );
        assert_eq!(sanitise("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(sanitise(""), "_");
        assert_eq!(sanitise(&"x".repeat(300)).len(), 64);
    }

    #[test]
    fn what_hound_reads_back_is_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        for layout in [Layout::Stereo, Layout::Mono] {
            let mut rec = Recorder::new(dir.path(), layout);
            let start = Timestamp::from_nanos(1_796_198_746 * 1_000_000_000);
            rec.start_call("agent 7", "call/1@host", start).unwrap();
            let (a, b) = (pcm(8000, 800, 3), pcm(8000, 333, 7));
            rec.write(&a).unwrap();
            rec.write(&b).unwrap();
            let path = rec.path().unwrap().to_path_buf();
            assert_eq!(
                path.file_name().unwrap(),
                "agent_7_call_1_host_20261202T080546Z.wav"
            );
            assert!(matches!(
                rec.write(&pcm(48_000, 1, 1)),
                Err(Error::RateChanged { .. })
            ));
            rec.finish().unwrap();
            let mut want = Vec::new();
            for p in [&a, &b] {
                for (x, y) in p.agent.iter().zip(&p.caller) {
                    match layout {
                        Layout::Stereo => want.extend([*x, *y]),
                        Layout::Mono => want.push(x.saturating_add(*y)),
                    }
                }
            }
            let mut reader = hound::WavReader::open(&path).unwrap();
            assert_eq!(reader.spec().channels, layout.channels());
            assert_eq!(reader.spec().sample_rate, 8000);
            assert_eq!(reader.spec().bits_per_sample, 16);
            let got: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
            assert_eq!(got, want);
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn the_same_call_heard_again_never_overwrites_its_recording() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recorder::new(dir.path(), Layout::Mono);
        let start = Timestamp::from_nanos(1_796_198_746 * 1_000_000_000);
        let mut paths = Vec::new();
        for _ in 0..3 {
            rec.start_call("5001", "c1", start).unwrap();
            rec.write(&pcm(8000, 800, 3)).unwrap();
            paths.push(rec.path().unwrap().to_path_buf());
            rec.finish().unwrap();
        }
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "5001_c1_20261202T080546Z.wav",
                "5001_c1_20261202T080546Z-2.wav",
                "5001_c1_20261202T080546Z-3.wav"
            ]
        );
        for p in &paths {
            assert_eq!(hound::WavReader::open(p).unwrap().len(), 800);
        }
    }

    #[test]
    fn a_suspended_call_that_ends_elsewhere_is_forgotten_and_its_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recorder::new(dir.path(), Layout::Stereo);
        let t1 = Timestamp::from_nanos(1_796_198_746 * 1_000_000_000);
        rec.start_call("5001", "c1", t1).unwrap();
        rec.write(&pcm(8000, 800, 3)).unwrap();
        let call1 = rec.path().unwrap().to_path_buf();
        rec.suspend().unwrap();
        // The agent transferred call 1 during the consult: it never comes back.
        assert!(rec.forget("c1"));
        assert!(!rec.forget("c1"));
        assert_eq!(hound::WavReader::open(&call1).unwrap().duration(), 800);
        rec.start_call("5001", "c1", t1).unwrap();
        assert!(!rec.resumed(), "a forgotten call is not continued");
    }

    #[test]
    fn a_suspended_call_continues_its_file_when_the_agent_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recorder::new(dir.path(), Layout::Stereo);
        let t1 = Timestamp::from_nanos(1_796_198_746 * 1_000_000_000);
        let t2 = t1 + crate::time::Span::from_secs(5);
        let (a, b, c) = (pcm(8000, 800, 3), pcm(8000, 400, 5), pcm(8000, 300, 7));
        rec.start_call("5001", "c1", t1).unwrap();
        rec.write(&a).unwrap();
        let call1 = rec.path().unwrap().to_path_buf();
        assert!(!rec.resumed());
        // A consult: call 1 is set aside, valid on disk.
        rec.suspend().unwrap();
        assert_eq!(hound::WavReader::open(&call1).unwrap().duration(), 800);
        rec.start_call("5001", "consult", t2).unwrap();
        rec.write(&b).unwrap();
        let consult = rec.path().unwrap().to_path_buf();
        rec.finish().unwrap();
        // Back to call 1: the same file grows.
        rec.start_call("5001", "c1", t1).unwrap();
        rec.write(&c).unwrap();
        assert_eq!(rec.path(), Some(call1.as_path()));
        assert!(rec.resumed());
        rec.finish().unwrap();
        let mut want = Vec::new();
        for p in [&a, &c] {
            for (x, y) in p.agent.iter().zip(&p.caller) {
                want.extend([*x, *y]);
            }
        }
        let got: Vec<i16> = hound::WavReader::open(&call1)
            .unwrap()
            .samples::<i16>()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(hound::WavReader::open(&consult).unwrap().duration(), 400);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 2);
        // Finished means over: the same call id again (a later call reusing it, or the same
        // call heard anew after its end) gets a file of its own.
        rec.start_call("5001", "c1", t1).unwrap();
        rec.write(&c).unwrap();
        assert_ne!(rec.path(), Some(call1.as_path()));
        rec.suspend().unwrap();
        rec.start_call("5001", "c1", t2).unwrap();
        rec.write(&c).unwrap();
        assert!(
            !rec.resumed(),
            "another call with the same id started later"
        );
        rec.finish().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_recording_interrupted_by_drop_is_a_valid_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut rec = Recorder::new(dir.path(), Layout::Stereo);
            rec.start_call("a1", "c1", Timestamp::ZERO).unwrap();
            rec.write(&pcm(48_000, 4800, 5)).unwrap();
            rec.path().unwrap().to_path_buf()
            // Dropped here without finish(), as on SIGINT.
        };
        let mut reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.duration(), 4800);
        assert_eq!(reader.samples::<i16>().count(), 9600);
        // Starting the next call finalises the previous file too.
        let mut rec = Recorder::new(dir.path(), Layout::Mono);
        rec.start_call("a1", "c2", Timestamp::ZERO).unwrap();
        rec.write(&pcm(8000, 10, 1)).unwrap();
        let first = rec.path().unwrap().to_path_buf();
        rec.start_call("a1", "c3", Timestamp::ZERO).unwrap();
        assert_eq!(hound::WavReader::open(&first).unwrap().duration(), 10);
    }
}
