//! A mapped capture file's pages, kept by a thread of its own so that the reader neither faults
//! on a page nor waits for one to be released: the pager maps the pages ahead of the reader
//! (`MADV_POPULATE_READ`: the kernel fills the page tables from the page cache, reading the file
//! if need be) and releases those behind it (`MADV_DONTNEED`, in [`RELEASE_STEP`]s, so the
//! process holds about that much of the file, not all of it).
//!
//! Rules:
//! - The reader only publishes how far it is ([`Pager::reader_at`]: a relaxed store every
//!   [`REPORT_STEP`] bytes, nothing per record otherwise). The pager never maps below that
//!   position, never more than [`AHEAD`] beyond it, and never releases at or above it; both
//!   advices run on the pager thread only, in order, so a released page is never mapped again.
//! - A kernel without `MADV_POPULATE_READ` (before Linux 5.14) fails the first one: the pager
//!   then only releases, and the reader faults its pages in as it would without a pager.
//! - The pager stops when the reader drops its [`Pager`]; it owns its own handle of the map.
//! - Where no thread can be started, the reader releases the pages itself ([`release_behind`]).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::{Advice, Mmap, UncheckedAdvice};

/// The pages before the reader are released in steps of this (a multiple of every page size).
pub const RELEASE_STEP: usize = 64 << 20;
/// How far ahead of the reader the pager maps: ~3 ms of reading at 3 GiB/s.
pub const AHEAD: usize = 8 << 20;
/// Bytes mapped by one advice.
const POPULATE_STEP: usize = 2 << 20;
/// The reader publishes its position when it moved this far.
pub const REPORT_STEP: usize = 1 << 20;
/// The pager's nap when it is [`AHEAD`] of the reader.
const NAP: Duration = Duration::from_micros(500);

/// The reader's end of a pager thread.
pub struct Pager {
    position: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    next_report: usize,
}

impl Pager {
    /// Starts a pager over `map` for a reader beginning at byte `from`.
    pub fn start(map: Arc<Mmap>, from: usize) -> std::io::Result<Pager> {
        let position = Arc::new(AtomicUsize::new(from));
        let stop = Arc::new(AtomicBool::new(false));
        let (at, halt) = (position.clone(), stop.clone());
        std::thread::Builder::new()
            .name("silentmon-pager".into())
            .spawn(move || run(&map, &at, &halt))?;
        Ok(Pager {
            position,
            stop,
            next_report: from,
        })
    }

    /// The reader is at byte `at` (it no longer reads anything before it). Cheap enough for
    /// every record: it stores only every [`REPORT_STEP`] bytes.
    #[inline]
    pub fn reader_at(&mut self, at: usize) {
        if at >= self.next_report {
            self.position.store(at, Ordering::Relaxed);
            self.next_report = at + REPORT_STEP;
        }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The pager thread: release behind, map ahead, nap when ahead enough.
fn run(map: &Mmap, position: &AtomicUsize, stop: &AtomicBool) {
    let (mut mapped, mut released, mut populate) = (0, 0, true);
    while !stop.load(Ordering::Acquire) {
        let at = position.load(Ordering::Relaxed);
        release_behind(map, &mut released, at);
        let from = mapped.max(at);
        let until = at.saturating_add(AHEAD).min(map.len());
        if populate && from < until {
            let n = (until - from).min(POPULATE_STEP);
            populate = map.advise_range(Advice::PopulateRead, from, n).is_ok();
            mapped = from + n;
        } else {
            std::thread::sleep(NAP);
        }
    }
}

/// Releases the whole [`RELEASE_STEP`]s of `map` before byte `at` not released yet.
pub fn release_behind(map: &Mmap, released: &mut usize, at: usize) {
    let upto = at / RELEASE_STEP * RELEASE_STEP;
    if upto > *released {
        // SAFETY: a private read-only map: MADV_DONTNEED drops the pages, a later access would
        // read them from the file again; nothing before `at` (the current record of a reader
        // whose earlier frames borrowed it until its next call) is read again.
        let _ = unsafe {
            map.unchecked_advise_range(UncheckedAdvice::DontNeed, *released, upto - *released)
        };
        *released = upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `map[..len]` the process has mapped now (mincore reports the page cache, so
    /// this reads /proc's view of the mapping instead).
    fn resident_kib(map: &Mmap) -> u64 {
        let start = map.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(l) = lines.next() {
            let range = l.split_whitespace().next().unwrap_or("");
            let Some((a, _)) = range.split_once('-') else {
                continue;
            };
            if usize::from_str_radix(a, 16) == Ok(start) {
                for l in lines.by_ref() {
                    if let Some(v) = l.strip_prefix("Rss:") {
                        return v.trim().trim_end_matches(" kB").parse().unwrap();
                    }
                }
            }
        }
        panic!("the map is not in /proc/self/smaps");
    }

    fn wait_for(mut ok: impl FnMut() -> bool) -> bool {
        for _ in 0..2000 {
            if ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn maps_ahead_of_the_reader_and_releases_behind_it() {
        let len = RELEASE_STEP + 2 * AHEAD;
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(len as u64).unwrap();
        // SAFETY: a private read-only map of a temporary file nobody else truncates.
        let map = Arc::new(unsafe { Mmap::map(f.as_file()).unwrap() });
        assert_eq!(resident_kib(&map), 0);
        let mut pager = Pager::start(map.clone(), 0).unwrap();
        // The kernel may map a whole large folio around a page: up to 4 MiB more than asked.
        let about = |bytes: usize| {
            let (want, now) = ((bytes >> 10) as u64, resident_kib(&map));
            want <= now && now < want + 4096
        };
        // Without a read, the pager maps the first AHEAD bytes and no more.
        assert!(wait_for(|| about(AHEAD)), "{} kB", resident_kib(&map));
        std::thread::sleep(Duration::from_millis(20));
        assert!(about(AHEAD), "{} kB", resident_kib(&map));
        // The reader half way: the pager keeps AHEAD beyond it (nothing is released yet).
        pager.reader_at(AHEAD / 2);
        assert!(wait_for(|| about(AHEAD / 2 + AHEAD)));
        // The reader at the first release step: all behind it goes, AHEAD beyond it comes.
        pager.reader_at(RELEASE_STEP);
        assert!(wait_for(|| about(AHEAD)), "{} kB", resident_kib(&map));
        std::thread::sleep(Duration::from_millis(20));
        assert!(about(AHEAD), "{} kB", resident_kib(&map));
        drop(pager);
    }

    #[test]
    fn the_reader_releases_by_itself_in_whole_steps() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len((2 * RELEASE_STEP) as u64).unwrap();
        // SAFETY: as above.
        let map = unsafe { Mmap::map(f.as_file()).unwrap() };
        map.advise(Advice::PopulateRead).unwrap();
        let mut released = 0;
        release_behind(&map, &mut released, RELEASE_STEP - 1);
        assert_eq!(released, 0);
        release_behind(&map, &mut released, RELEASE_STEP + 1);
        assert_eq!(released, RELEASE_STEP);
        assert_eq!(resident_kib(&map), (RELEASE_STEP >> 10) as u64);
    }
}
