//! Offline analysis of capture files, shared by `flows`, `extract` and `demo`: a file through
//! the engine ([`analyse`], with a progress bar on a terminal for large files) and the audio of
//! chosen streams or calls decoded to WAV ([`extract`]).
//!
//! Rules: a read error part-way keeps what was read before it ([`Analysis::stopped`]); every
//! failure is a typed [`Error`] naming the file or the selection; progress is updated every
//! [`PROGRESS_EVERY`] frames, never per packet.

pub mod extract;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::{self, PacketSource, PcapFile};
use crate::engine::{Engine, EngineConfig};
use crate::time::Timestamp;

/// Files smaller than this get no progress bar.
pub const PROGRESS_MIN_BYTES: u64 = 32 << 20;
/// Frames between progress updates (never per packet).
pub const PROGRESS_EVERY: u64 = 1 << 14;

/// Why an offline analysis or extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The BPF filter file could not be read.
    #[error("cannot read filter file {path}: {source}")]
    FilterFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The capture could not be opened or read.
    #[error(transparent)]
    Capture(#[from] capture::Error),
    /// What to extract was not understood or not found, or cannot be written as asked.
    #[error(transparent)]
    Extract(#[from] extract::Error),
}

/// Where the packets come from, validated.
#[derive(Clone, Debug)]
pub struct Input {
    /// The capture file.
    pub path: PathBuf,
    /// The BPF filter applied while reading.
    pub filter: Option<String>,
}

impl Input {
    /// From `-r FILE`, `-f BPF` and `--filter-file F` (the two filters are exclusive in clap).
    pub fn new(
        path: &Path,
        filter: Option<&str>,
        filter_file: Option<&Path>,
    ) -> Result<Self, Error> {
        let filter = match (filter, filter_file) {
            (Some(f), _) => Some(f.to_owned()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|source| Error::FilterFile {
                    path: file.to_owned(),
                    source,
                })?;
                Some(capture::read_filter_file(&text))
            }
            (None, None) => None,
        };
        Ok(Input {
            path: path.to_owned(),
            filter,
        })
    }

    /// Opens the capture.
    pub fn open(&self) -> Result<PcapFile, Error> {
        Ok(PcapFile::open(&self.path, self.filter.as_deref())?)
    }
}

/// A finished pass over a file.
pub struct Analysis {
    /// The engine that saw every frame read.
    pub engine: Engine,
    /// Capture time of the first frame (report times are relative to it, like tshark's).
    pub first_ts: Option<Timestamp>,
    /// Reading stopped early (a corrupt or cut record): the packets before it were analysed.
    pub stopped: Option<capture::Error>,
}

impl Analysis {
    /// The analysis, or the read error when the file could not be read to its end.
    pub fn complete(self) -> Result<Analysis, Error> {
        match self.stopped {
            Some(e) => Err(e.into()),
            None => Ok(self),
        }
    }
}

/// Runs the whole file through a new engine; a read error part-way ends the pass and is kept
/// in [`Analysis::stopped`] with what was read before it.
pub fn analyse(input: &Input, config: EngineConfig) -> Result<Analysis, Error> {
    let mut source = input.open()?;
    let link = source.link_type();
    let mut engine = Engine::new(config);
    let progress = progress_bar(&input.path);
    let mut first_ts = None;
    let mut n: u64 = 0;
    let mut stopped = None;
    loop {
        let frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                stopped = Some(e);
                break;
            }
        };
        first_ts.get_or_insert(frame.ts);
        engine.handle_frame(frame.ts, link, frame.data);
        n += 1;
        if n % PROGRESS_EVERY == 0 {
            if let Some(p) = &progress {
                p.set_position(source.position());
            }
        }
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    tracing::info!(frames = n, file = %input.path.display(), "capture analysed");
    Ok(Analysis {
        engine,
        first_ts,
        stopped,
    })
}

/// A byte-based progress bar when stderr is a terminal and the file is large.
fn progress_bar(path: &Path) -> Option<ProgressBar> {
    let len = std::fs::metadata(path).ok()?.len();
    if len < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .ok()?
        .progress_chars("=> "),
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Some(bar)
}
