//! The offline driver shared by `flows`, `extract` and `demo`: a capture file through the engine,
//! with a progress bar on a terminal for large files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::{self, PacketSource, PcapFile};
use crate::engine::{Engine, EngineConfig};
use crate::time::Timestamp;

/// Files smaller than this get no progress bar.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;
/// Frames between progress updates (never per packet).
const PROGRESS_EVERY: u64 = 1 << 14;

/// Where the packets come from, validated.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub(crate) path: PathBuf,
    pub(crate) filter: Option<String>,
}

impl Input {
    /// From `-r FILE`, `-f BPF` and `--filter-file F` (the two filters are exclusive in clap).
    pub(crate) fn new(
        path: &Path,
        filter: Option<&str>,
        filter_file: Option<&Path>,
    ) -> Result<Self> {
        let filter = match (filter, filter_file) {
            (Some(f), _) => Some(f.to_owned()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read filter file {}", file.display()))?;
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
    pub(crate) fn open(&self) -> Result<PcapFile> {
        Ok(PcapFile::open(&self.path, self.filter.as_deref())?)
    }
}

/// A finished pass over a file.
pub(crate) struct Analysis {
    pub(crate) engine: Engine,
    /// Capture time of the first frame (report times are relative to it, like tshark's).
    pub(crate) first_ts: Option<Timestamp>,
    /// Reading stopped early (a corrupt or cut record): the packets before it were analysed.
    pub(crate) stopped: Option<capture::Error>,
}

impl Analysis {
    /// The analysis, or the read error when the file could not be read to its end.
    pub(crate) fn complete(self) -> Result<Analysis> {
        match self.stopped {
            Some(e) => Err(e.into()),
            None => Ok(self),
        }
    }
}

/// Runs the whole file through a new engine; a read error part-way ends the pass and is kept
/// in [`Analysis::stopped`] with what was read before it.
pub(crate) fn analyse(input: &Input, config: EngineConfig) -> Result<Analysis> {
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
pub(crate) fn progress_bar(path: &Path) -> Option<ProgressBar> {
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
