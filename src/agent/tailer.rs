//! Follows Caddy's JSON access log through Caddy's own rolling, numbering every line so that
//! a reader can resume — even across an agent restart — without a gap or a repeat.
//!
//! # Following
//!
//! A blocking thread reads the file in large chunks until end of file, then sleeps
//! [`POLL_INTERVAL`] and looks again. At end of file it compares the inode the path names with
//! the inode it holds open:
//!
//! - another inode: Caddy rolled the log (renamed it to `access-<time>.log`, to be gzipped,
//!   and created a new `access.log`). Caddy closes the old file before the rename, so the
//!   open descriptor is drained to its end first, then the new file is read from offset 0;
//! - the same inode but shorter than what was read: truncated; read again from 0;
//! - no file at the path: between Caddy's rename and its create, or deleted; keep the old
//!   descriptor and wait. Before the first file exists the path is polled every
//!   [`WAIT_INTERVAL`].
//!
//! A line without its newline yet is held until it is complete. A line that is not JSON, or
//! an access line without the fields the viewer needs, is counted as malformed and skipped;
//! lines of other loggers are skipped silently.
//!
//! # Ids
//!
//! Every complete line of a file has an id: `base_id + (index of the line in the file)`, so
//! ids increase by one per line, and skipped lines leave their id unused. A new file (or a
//! truncated one) starts at the next unused id. The state file records the current file's
//! device and inode, its `base_id`, its first line's hash and the next unused id, written
//! (temp file + rename) whenever a file is opened and before the ids of each chunk are
//! published, so it never lags behind what a reader has seen.
//!
//! On start-up, if the path still names the file of the state file (same inode, not shorter
//! than what was read, same first line) it is read again from 0 with the same `base_id`: the
//! ids are exactly those of before the restart, and the ring is filled again. Otherwise the
//! new file starts at the saved next id **plus one**.
//!
//! # Limits
//!
//! - Lines written to a file after the agent stopped and before Caddy rolled it away are
//!   never read. The one id skipped on start-up makes a resuming reader see a `gap`, but its
//!   `missing` count (1) is a lower bound: how many lines the rolled file held is unknown.
//! - Two rolls between two looks at the path (more than a roll size written in
//!   [`POLL_INTERVAL`]) skip the file in between; likewise a first file created and rolled
//!   away before the first look. With `roll_size 1MiB` that takes over 20 MB/s of log.
//!   Such lines never get ids, so no reader is told of them.
//! - After a restart the current file is read again from its start as fast as it parses;
//!   a reader resuming meanwhile from far back in a large file can fall more than
//!   [`LIVE_CAPACITY`](super::logs::LIVE_CAPACITY) behind and get a `gap` for lines that
//!   were there.
//! - A file truncated and refilled past the old end between two looks, or while the agent is
//!   down with the same first line, is not noticed.
//! - The state file is not fsynced: it survives the agent being killed, not a power cut.

use super::logs::LogStore;
use crate::domain::access_log::{ParsedLine, parse_line};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Pause between looks once the file is open and fully read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Pause between looks for a file that does not exist yet. As short as [`POLL_INTERVAL`]:
/// Caddy creates the log with its first line, and a busy site can fill and roll a first file
/// as fast as any other (1 MiB in 140 ms was seen in the tests), which a slower look misses.
pub const WAIT_INTERVAL: Duration = Duration::from_millis(50);
/// One read: large, so 50,000 lines a second cost a few dozen system calls.
const CHUNK_BYTES: usize = 1 << 20;
/// A longer line is counted as malformed and dropped as it streams past, so a file without
/// newlines cannot make the agent buffer it whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// How much of the first line identifies a file across restarts (with its inode).
const HEAD_BYTES: usize = 4096;

/// What survives a restart; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub dev: u64,
    pub inode: u64,
    /// The id of the file's first line.
    pub base_id: u64,
    /// FNV-1a of the file's first line (at most its first 4 KiB); `None` while it had none.
    pub head: Option<u64>,
    /// Bytes of complete lines read; a file found shorter on start-up was truncated.
    pub offset: u64,
    /// The first id not given out yet.
    pub next_id: u64,
}

impl SavedState {
    pub fn load(path: &Path) -> Option<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read the log state file; ids start afresh");
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "the log state file is damaged; ids start afresh");
                None
            }
        }
    }

    /// Temp file + rename, so a reader (or a crash) sees the old state or the new, never half.
    fn save(&self, path: &Path) -> io::Result<()> {
        let mut temp = path.as_os_str().to_owned();
        temp.push(format!(".{}.tmp", std::process::id()));
        let temp = PathBuf::from(temp);
        let json = serde_json::to_vec(self).expect("the state serializes");
        std::fs::write(&temp, json)?;
        std::fs::rename(&temp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }
}

/// The running tailer thread; dropping it asks the thread to stop.
pub struct Tailer {
    stop: Arc<AtomicBool>,
}

impl Drop for Tailer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts following `path` on its own thread, publishing into `store`.
pub fn spawn(path: PathBuf, state_file: PathBuf, store: LogStore) -> io::Result<Tailer> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("access-log-tailer".into())
        .spawn(move || {
            let mut follower = Follower::new(path, state_file, store);
            while !flag.load(Ordering::Relaxed) {
                let pause = follower.poll();
                std::thread::sleep(pause);
            }
        })?;
    Ok(Tailer { stop })
}

/// The file being read and where in it.
struct Current {
    file: File,
    dev: u64,
    inode: u64,
    base_id: u64,
    /// Complete lines read so far.
    lines: u64,
    /// Bytes read from the file, `pending` included.
    read: u64,
    /// The start of a line whose newline has not been written yet.
    pending: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE_BYTES`], dropping bytes until its newline.
    oversized: bool,
    head: Option<u64>,
    /// So a damaged file warns once, not once per line.
    warned: bool,
}

impl Current {
    fn open(file: File, base_id: u64) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            head: head_of(&file),
            file,
            dev: meta.dev(),
            inode: meta.ino(),
            base_id,
            lines: 0,
            read: 0,
            pending: Vec::new(),
            oversized: false,
            warned: false,
        })
    }

    fn next_id(&self) -> u64 {
        self.base_id + self.lines
    }
}

/// The tailer's logic, one [`Follower::poll`] at a time, so tests can drive it without
/// threads or sleeps.
pub struct Follower {
    path: PathBuf,
    state_file: PathBuf,
    store: LogStore,
    current: Option<Current>,
    /// From the state file, until the first file is opened.
    saved: Option<SavedState>,
    /// No id below this is ever given out again: the saved next id of an earlier process.
    floor: u64,
    persisted: Option<SavedState>,
    /// Whether a file has been opened yet: only the first may carry ids of a saved state.
    started: bool,
    buf: Vec<u8>,
    /// The last error logged, so a lasting one is logged once.
    last_error: Option<String>,
    /// Likewise for writing the state file, which fails apart from reading.
    state_error: Option<String>,
}

impl Follower {
    pub fn new(path: PathBuf, state_file: PathBuf, store: LogStore) -> Self {
        let saved = SavedState::load(&state_file);
        Self {
            floor: saved.as_ref().map_or(1, |s| s.next_id),
            path,
            state_file,
            store,
            current: None,
            saved,
            persisted: None,
            started: false,
            buf: vec![0; CHUNK_BYTES],
            last_error: None,
            state_error: None,
        }
    }

    /// Reads whatever is new, follows a roll or a truncation, and says how long to wait
    /// before the next look. Errors are logged, never fatal: the next poll tries again.
    pub fn poll(&mut self) -> Duration {
        match self.step() {
            Ok(pause) => {
                self.last_error = None;
                pause
            }
            Err(err) => {
                let text = err.to_string();
                if self.last_error.as_deref() != Some(&text) {
                    tracing::warn!(path = %self.path.display(), error = %text, "cannot read the access log; retrying");
                    self.last_error = Some(text);
                }
                WAIT_INTERVAL
            }
        }
    }

    fn step(&mut self) -> io::Result<Duration> {
        if self.current.is_none() {
            let file = match File::open(&self.path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(WAIT_INTERVAL),
                Err(err) => return Err(err),
            };
            self.open(file)?;
        }
        self.read_to_end()?;
        let current = self.current.as_mut().expect("opened above");
        match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) != (current.dev, current.inode) => {
                // Caddy closed the old file before renaming it: what the descriptor still
                // holds is all there will ever be.
                self.read_to_end()?;
                self.finish_file();
                match File::open(&self.path) {
                    Ok(file) => {
                        let base = self.next_id();
                        tracing::debug!(path = %self.path.display(), base_id = base, "the access log was rolled");
                        self.start(Current::open(file, base)?);
                    }
                    // Rolled again in between: the next look opens whatever is there.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        self.floor = self.next_id();
                        self.current = None;
                    }
                    Err(err) => return Err(err),
                }
                return Ok(Duration::ZERO);
            }
            Ok(_) if current.file.metadata()?.len() < current.read => {
                let base = current.next_id();
                tracing::info!(path = %self.path.display(), base_id = base, "the access log was truncated; reading it again from the start");
                current.file.seek(SeekFrom::Start(0))?;
                let file = current.file.try_clone()?;
                self.start(Current::open(file, base)?);
                return Ok(Duration::ZERO);
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        Ok(POLL_INTERVAL)
    }

    /// Opens the file at the path. For the first file of this process, that is the saved
    /// one again with its old ids, or a new one; later files continue where the last ended.
    fn open(&mut self, file: File) -> io::Result<()> {
        let current = Current::open(file, 0)?;
        if self.started {
            let base = self.floor;
            self.start(Current {
                base_id: base,
                ..current
            });
            return Ok(());
        }
        self.started = true;
        let size = current.file.metadata()?.len();
        let base = match self.saved.take() {
            Some(saved)
                if (saved.dev, saved.inode) == (current.dev, current.inode)
                    && size >= saved.offset
                    && (saved.head.is_none() || saved.head == current.head) =>
            {
                tracing::info!(path = %self.path.display(), base_id = saved.base_id, "reading the access log again with the ids it had");
                saved.base_id
            }
            Some(saved) => {
                // Lines Caddy wrote to the previous file after the agent stopped may be lost
                // with it: leave one id unused so a resuming reader is told of a gap.
                let base = saved.next_id + 1;
                tracing::info!(path = %self.path.display(), base_id = base, "the access log is a new file since the last run");
                base
            }
            None => 1,
        };
        self.store.starts_at(base);
        self.floor = self.floor.max(base);
        self.start(Current {
            base_id: base,
            ..current
        });
        Ok(())
    }

    fn start(&mut self, current: Current) {
        self.current = Some(current);
        self.persist();
    }

    fn next_id(&self) -> u64 {
        self.current
            .as_ref()
            .map_or(self.floor, |c| c.next_id().max(self.floor))
    }

    /// Reads and publishes until end of file. A read shorter than the buffer has reached it;
    /// stopping there, rather than reading again until a read returns nothing, keeps a file
    /// written line by line from being chased one line per read.
    fn read_to_end(&mut self) -> io::Result<()> {
        loop {
            let current = self.current.as_mut().expect("a file is open");
            let n = match current.file.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            current.read += n as u64;
            let mut entries = Vec::new();
            let mut malformed = 0;
            let mut rest = &self.buf[..n];
            while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                let (piece, after) = (&rest[..newline], &rest[newline + 1..]);
                rest = after;
                if current.oversized {
                    current.oversized = false;
                    line_done(current, None, &mut entries, &mut malformed, &self.path);
                } else if current.pending.is_empty() {
                    line_done(
                        current,
                        Some(piece),
                        &mut entries,
                        &mut malformed,
                        &self.path,
                    );
                } else {
                    let mut line = std::mem::take(&mut current.pending);
                    line.extend_from_slice(piece);
                    line_done(
                        current,
                        Some(&line),
                        &mut entries,
                        &mut malformed,
                        &self.path,
                    );
                }
            }
            hold(current, rest);
            self.store.count_malformed(malformed);
            self.persist();
            self.store.publish(entries);
            if n < self.buf.len() {
                return Ok(());
            }
        }
    }

    /// The old file of a roll is complete: a last line without its newline is still a line.
    fn finish_file(&mut self) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.pending.is_empty() && !current.oversized {
            return;
        }
        let mut entries = Vec::new();
        let mut malformed = 0;
        let line = std::mem::take(&mut current.pending);
        let line = (!current.oversized).then_some(line.as_slice());
        current.oversized = false;
        line_done(current, line, &mut entries, &mut malformed, &self.path);
        self.store.count_malformed(malformed);
        self.persist();
        self.store.publish(entries);
    }

    /// Writes the state file when it would change; called before ids are published.
    fn persist(&mut self) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.head.is_none() && current.lines > 0 {
            current.head = head_of(&current.file);
        }
        let state = SavedState {
            dev: current.dev,
            inode: current.inode,
            base_id: current.base_id,
            head: current.head,
            offset: current.read - current.pending.len() as u64,
            next_id: current.next_id().max(self.floor),
        };
        if self.persisted.as_ref() == Some(&state) {
            return;
        }
        match state.save(&self.state_file) {
            Ok(()) => {
                self.persisted = Some(state);
                self.state_error = None;
            }
            Err(err) => {
                let text = err.to_string();
                if self.state_error.as_deref() != Some(&text) {
                    tracing::warn!(path = %self.state_file.display(), error = %text, "cannot write the log state file; ids may repeat after a restart");
                    self.state_error = Some(text);
                }
            }
        }
    }
}

/// Keeps the start of an unfinished line, or drops it once it is longer than any real line.
fn hold(current: &mut Current, rest: &[u8]) {
    if current.oversized || rest.is_empty() {
        return;
    }
    if current.pending.len() + rest.len() > MAX_LINE_BYTES {
        current.pending = Vec::new();
        current.oversized = true;
    } else {
        current.pending.extend_from_slice(rest);
    }
}

/// Numbers one complete line and sorts it: an entry, another logger's line, or damage
/// (`None` is a line too long to keep).
fn line_done(
    current: &mut Current,
    line: Option<&[u8]>,
    entries: &mut Vec<crate::domain::access_log::Entry>,
    malformed: &mut u64,
    path: &Path,
) {
    let id = current.next_id();
    current.lines += 1;
    let parsed = match line {
        Some(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_line(text).map_err(|e| e.to_string())),
        None => Err(format!("a line longer than {MAX_LINE_BYTES} bytes")),
    };
    match parsed {
        Ok(ParsedLine::Access(mut entry)) => {
            entry.id = id;
            entries.push(entry);
        }
        Ok(ParsedLine::NotAccess) => {}
        Err(reason) => {
            *malformed += 1;
            if current.warned {
                tracing::debug!(path = %path.display(), id, %reason, "skipped a malformed access-log line");
            } else {
                current.warned = true;
                tracing::warn!(path = %path.display(), id, %reason, "skipped a malformed access-log line (further ones in this file are logged at debug level)");
            }
        }
    }
}

/// FNV-1a of the file's first line (up to [`HEAD_BYTES`]), read without moving the offset;
/// `None` while the file has no complete first line.
fn head_of(file: &File) -> Option<u64> {
    let mut buf = [0; HEAD_BYTES];
    let mut filled = 0;
    while filled < HEAD_BYTES {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let line = match buf[..filled].iter().position(|&b| b == b'\n') {
        Some(end) => &buf[..end],
        None if filled == HEAD_BYTES => &buf[..],
        None => return None,
    };
    Some(line.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Fixture {
        dir: tempfile::TempDir,
        store: LogStore,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                store: LogStore::new(1000),
            }
        }

        fn log(&self) -> PathBuf {
            self.dir.path().join("access.log")
        }

        fn follower(&self) -> Follower {
            Follower::new(
                self.log(),
                self.dir.path().join("state.json"),
                self.store.clone(),
            )
        }

        /// A new store, as a restarted agent has.
        fn restarted(&mut self) -> Follower {
            self.store = LogStore::new(1000);
            self.follower()
        }

        fn append(&self, text: &str) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log())
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        }

        /// (id, uri) of everything in the ring.
        fn seen(&self) -> Vec<(u64, String)> {
            self.store
                .query(None, 10_000, None)
                .into_iter()
                .map(|e| (e.id, e.uri))
                .collect()
        }
    }

    fn line(uri: &str) -> String {
        format!(
            "{{\"level\":\"info\",\"ts\":1795316604.98,\"logger\":\"http.log.access.log0\",\"msg\":\"handled request\",\"request\":{{\"remote_ip\":\"127.0.0.1\",\"method\":\"GET\",\"host\":\"app.localhost:8080\",\"uri\":\"{uri}\"}},\"duration\":0.001,\"size\":2,\"status\":200}}\n"
        )
    }

    fn lines(uris: &[&str]) -> String {
        uris.iter().map(|u| line(u)).collect()
    }

    fn seen(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
        pairs.iter().map(|(id, u)| (*id, u.to_string())).collect()
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start_with_ids_from_one() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        assert_eq!(follower.poll(), WAIT_INTERVAL);
        assert!(fx.seen().is_empty());

        fx.append(&lines(&["/a", "/b"]));
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(1, "/a"), (2, "/b")]));
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        let second = line("/b");
        let (start, end) = second.split_at(40);
        fx.append(&(line("/a") + start));
        follower.poll();
        assert_eq!(fx.seen(), seen(&[(1, "/a")]));

        fx.append(end);
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(1, "/a"), (2, "/b")]));
        assert_eq!(fx.store.malformed(), 0);
    }

    #[test]
    fn on_a_roll_the_old_file_is_drained_before_the_new_one_is_read() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&lines(&["/1", "/2"]));
        follower.poll();
        // Written after the last look, then rolled away before the next: only the open
        // descriptor still reaches these, the last one without its newline.
        fx.append(&(line("/3") + line("/4").trim_end()));
        std::fs::rename(fx.log(), fx.dir.path().join("access-2026.log")).unwrap();
        fx.append(&lines(&["/5", "/6"]));

        follower.poll();
        follower.poll();

        assert_eq!(
            fx.seen(),
            seen(&[
                (1, "/1"),
                (2, "/2"),
                (3, "/3"),
                (4, "/4"),
                (5, "/5"),
                (6, "/6")
            ])
        );
    }

    #[test]
    fn between_the_rename_and_the_new_file_the_old_one_is_still_read() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&line("/1"));
        follower.poll();
        let old = fx.dir.path().join("access-2026.log");
        std::fs::rename(fx.log(), &old).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&old)
            .unwrap()
            .write_all(line("/2").as_bytes())
            .unwrap();

        follower.poll();
        fx.append(&line("/3"));
        follower.poll();
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(1, "/1"), (2, "/2"), (3, "/3")]));
    }

    #[test]
    fn a_truncated_file_is_read_again_from_its_start_with_new_ids() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&lines(&["/1", "/2", "/3"]));
        follower.poll();

        std::fs::write(fx.log(), line("/after")).unwrap();
        follower.poll();
        follower.poll();

        assert_eq!(
            fx.seen(),
            seen(&[(1, "/1"), (2, "/2"), (3, "/3"), (4, "/after")])
        );
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped_and_other_loggers_ignored() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&line("/1"));
        fx.append("this is not JSON\n");
        fx.append("{\"level\":\"info\",\"logger\":\"http\",\"msg\":\"server running\"}\n");
        fx.append("\u{0}\u{1}\n");
        fx.append(&line("/5"));

        follower.poll();

        assert_eq!(fx.seen(), seen(&[(1, "/1"), (5, "/5")]));
        assert_eq!(fx.store.malformed(), 2);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_dropped_as_it_streams_past() {
        let fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&line("/1"));
        fx.append(&"x".repeat(MAX_LINE_BYTES + 10));
        follower.poll();
        assert!(follower.current.as_ref().unwrap().pending.is_empty());
        fx.append(&"y".repeat(MAX_LINE_BYTES));
        fx.append("\n");
        fx.append(&line("/3"));

        follower.poll();

        assert_eq!(fx.seen(), seen(&[(1, "/1"), (3, "/3")]));
        assert_eq!(fx.store.malformed(), 1);
    }

    #[test]
    fn after_a_restart_the_same_file_gets_the_same_ids_and_continues() {
        let mut fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&lines(&["/1", "/2"]));
        follower.poll();
        std::fs::rename(fx.log(), fx.dir.path().join("access-2026.log")).unwrap();
        fx.append(&lines(&["/3", "/4"]));
        follower.poll();
        follower.poll();
        assert_eq!(fx.seen().last(), Some(&(4, "/4".to_string())));
        drop(follower);

        fx.append(&line("/5"));
        let mut follower = fx.restarted();
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(3, "/3"), (4, "/4"), (5, "/5")]));
        assert_eq!(fx.store.replay_after(2).missing, 0);
        assert_eq!(fx.store.replay_after(1).missing, 1);
    }

    #[test]
    fn a_file_rolled_while_the_agent_was_down_leaves_a_gap_of_at_least_one() {
        let mut fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&lines(&["/1", "/2"]));
        follower.poll();
        drop(follower);

        fx.append(&line("/never-seen"));
        std::fs::rename(fx.log(), fx.dir.path().join("access-2026.log")).unwrap();
        fx.append(&line("/new"));
        let mut follower = fx.restarted();
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(4, "/new")]));
        assert_eq!(fx.store.replay_after(2).missing, 1);
        assert_eq!(fx.store.last_id(), 4);
    }

    #[test]
    fn a_file_rewritten_while_the_agent_was_down_is_a_new_file_even_with_its_inode() {
        let mut fx = Fixture::new();
        let mut follower = fx.follower();
        fx.append(&lines(&["/1", "/2"]));
        follower.poll();
        drop(follower);

        // Same inode, at least as long, another first line: not the file the ids belong to.
        std::fs::write(fx.log(), lines(&["/other", "/x", "/y"])).unwrap();
        let mut follower = fx.restarted();
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(4, "/other"), (5, "/x"), (6, "/y")]));
    }

    #[test]
    fn a_hundred_thousand_real_sized_lines_are_all_read_in_one_poll() {
        // How fast is a benchmark's question (`bash .ci/bench`, the log pipeline rows); this
        // test only says that a large backlog of real-sized lines is read whole and in order.
        const LINES: usize = 100_000;
        let fx = Fixture::new();
        // The size and shape of Caddy's own lines: headers and all, which the parser skips.
        let text: String = (0..LINES)
            .map(|n| {
                format!(
                    "{{\"level\":\"info\",\"ts\":1795321879.9131644,\"logger\":\"http.log.access.log0\",\"msg\":\"handled request\",\"request\":{{\"remote_ip\":\"127.0.0.1\",\"remote_port\":\"49566\",\"proto\":\"HTTP/1.1\",\"method\":\"GET\",\"host\":\"a.localhost:18999\",\"uri\":\"/r/{n}\",\"headers\":{{\"User-Agent\":[\"curl/7.88.1\"],\"Accept\":[\"*/*\"]}}}},\"user_id\":\"\",\"duration\":0.000021803,\"size\":2,\"status\":200,\"resp_headers\":{{\"Server\":[\"Caddy\"],\"Content-Type\":[\"text/plain; charset=utf-8\"]}}}}\n"
                )
            })
            .collect();
        fx.append(&text);
        let mut follower = fx.follower();
        follower.poll();

        assert_eq!(fx.store.last_id(), LINES as u64);
        assert_eq!(fx.store.malformed(), 0);
        let last = (LINES as u64, format!("/r/{}", LINES - 1));
        assert!(
            fx.seen().contains(&last),
            "the last line, numbered by its place"
        );
    }

    #[test]
    fn a_damaged_state_file_starts_ids_afresh_without_failing() {
        let mut fx = Fixture::new();
        std::fs::write(fx.dir.path().join("state.json"), "{not json").unwrap();
        fx.append(&line("/1"));
        let mut follower = fx.restarted();
        follower.poll();

        assert_eq!(fx.seen(), seen(&[(1, "/1")]));
        let saved = SavedState::load(&fx.dir.path().join("state.json")).unwrap();
        assert_eq!((saved.base_id, saved.next_id), (1, 2));
    }
}
