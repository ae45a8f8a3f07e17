//! The call log: what the call path writes at every step of a call (sessions, and pushes waiting
//! for delivery) in an append-only file of its own, mirrored in memory.
//!
//! These records are written many times a second and live briefly: a session is written at every
//! event and removed at the end, a push is written once and removed when delivered. In sled each
//! such change cost a B-tree update and a log write by sled's own I/O threads (the profile of a
//! callin load spent ~40% of all CPU there). Here a committed batch is one `pwrite` of one record,
//! and reads are served from ordered maps in memory.
//!
//! The file is `calls.log` in the store's directory:
//!
//! ```text
//! file    = MAGIC record*
//! record  = payload length (u32 LE) · CRC-32 of the payload (u32 LE) · payload
//! payload = op*
//! op      = tree (u8) · key length (u32 LE) · key · value length (u32 LE, u32::MAX removes) · value
//! ```
//!
//! Invariants:
//! - one record is one committed batch; on opening, the log is replayed up to the first record
//!   that is incomplete or fails its checksum (a write torn by a crash), which is cut off, so a
//!   batch is applied whole or not at all;
//! - only the store's committer thread appends (see [`CallLog::append`]), so records are in
//!   commit order; readers see a batch in memory only once its record is written;
//! - when the file has grown to several times what is live, it is rewritten as one snapshot of
//!   the maps, synced, and renamed over the old one, so the file stays proportional to the calls
//!   under way and their pending pushes;
//! - a file that holds less than the header, or eight zero bytes, is what a crash while the log
//!   was created leaves: no record was written, and the log starts anew;
//! - a record is never empty: eight zero bytes (a length of 0, and the CRC of nothing, 0) are what
//!   a file extended but never written holds, so replay treats them as a torn tail;
//! - a log of an older version (2) is replayed, its pushes converted to today's layout, and
//!   rewritten as a snapshot of this version (synced and renamed over it) before the store
//!   serves, so records of two versions never share a file.
//!
//! Memory: every key is held in the maps, and every value but the bodies of waiting pushes
//! beyond the outbox's budget (`push_memory_budget_mb`): such a push keeps only its header in
//! memory (what delivery schedules by, about 200 bytes with its key) and its body stays where its
//! record lies in the file, read back (`pread`) when it is sent. A compaction copies those bodies
//! into the new file and points them there. So while a customer's receiver is down, memory grows
//! by a push's header per push past the budget, not by its body (`/metrics`:
//! `privnum_call_log_push_memory_bytes`, `privnum_call_log_pushes_on_disk`), until the push's
//! dispatcher moves it out of the log to the spill (`spill.rs`), within a second; pushes whose
//! retries run out move to the dead letters, in sled.
//!
//! Durability is the group flush's job: it calls [`CallLog::sync`] (`fdatasync`) for writers that
//! wait for the disk.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use arc_swap::ArcSwap;

use super::{Error, Op, Tree};

/// The first bytes of a call log; the digit is the format's version. Version 3 keeps each push
/// in the outbox's layout 2 (its body as the bytes delivery sends, `outbox.rs`). (Version 1,
/// written only by development builds, kept dead letters and recordings too, under other tree
/// codes.)
const MAGIC: &[u8; 8] = b"PNCALLS3";

/// The header of version 2, whose records are framed as today's but hold pushes as one JSON
/// object each: opening one rewrites it as version 3 before anything is appended.
const MAGIC_V2: &[u8; 8] = b"PNCALLS2";

/// The file's name in the store's directory.
pub(crate) const FILE_NAME: &str = "calls.log";

/// A value length that marks a removal.
const REMOVED: u32 = u32::MAX;

/// The log is compacted once it is at least this large…
const COMPACT_MIN_BYTES: u64 = 64 << 20;
/// …and this many times the size of what is live.
const COMPACT_RATIO: u64 = 4;

/// A snapshot is written in records of about this size.
const SNAPSHOT_RECORD_BYTES: usize = 1 << 20;

/// The largest record replay accepts: far above any batch (the committer takes at most 4096
/// writes), so a larger length can only be a torn or damaged header.
const MAX_RECORD_BYTES: u32 = 1 << 30;

/// The trees kept here, in their on-disk codes (their index in [`Maps::trees`]).
const TREES: [Tree; 2] = [Tree::Outbox, Tree::Sessions];

/// One write as it is encoded: a tree, a key, and the value (`None` removes the key).
type Write<'a> = (Tree, &'a [u8], Option<&'a [u8]>);

fn code(tree: Tree) -> Option<usize> {
    TREES.iter().position(|t| *t == tree)
}

/// What the log holds and has done, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLogStats {
    /// The file's size now.
    pub file_bytes: u64,
    /// What its live records take (keys, values and framing).
    pub live_bytes: u64,
    /// Times the file was rewritten to what is live.
    pub compactions: u64,
    /// Their total duration, in microseconds: the committer waits for a compaction, so this is
    /// time the call path's writes were held up.
    pub compaction_micros: u64,
    /// Bytes of waiting pushes held whole in memory (at most the budget)…
    pub outbox_memory_bytes: u64,
    /// …and how many waiting pushes have their body in the file only.
    pub outbox_on_disk: u64,
}

/// A value as the maps hold it: in memory, or (a push beyond the memory budget) in the log file
/// only, with its head (the push's header, what delivery schedules by) kept in memory.
#[derive(Debug, Clone)]
enum Stored {
    Mem(Vec<u8>),
    Disk { head: Box<[u8]>, file: Arc<File>, offset: u64, len: u32 },
}

impl Stored {
    fn len(&self) -> usize {
        match self {
            Stored::Mem(value) => value.len(),
            Stored::Disk { len, .. } => *len as usize,
        }
    }

    /// The whole value, read from the file if it is there (a `pread`: blocking).
    fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Stored::Mem(value) => Ok(value.clone()),
            Stored::Disk { file, offset, len, .. } => {
                let mut value = vec![0; *len as usize];
                file.read_exact_at(&mut value, *offset)?;
                Ok(value)
            }
        }
    }

    /// What memory holds of it: the whole value, or its head.
    fn in_memory(&self) -> &[u8] {
        match self {
            Stored::Mem(value) => value,
            Stored::Disk { head, .. } => head,
        }
    }
}

/// The outbox's values held in memory take at most this many bytes unless told otherwise
/// ([`CallLog::open_with_budget`]); beyond it, a push's body stays in the file only.
pub(crate) const DEFAULT_OUTBOX_BUDGET: u64 = 64 << 20;

#[derive(Debug)]
struct Maps {
    trees: [BTreeMap<Vec<u8>, Stored>; TREES.len()],
    /// The bytes a snapshot of these maps would take.
    live_bytes: u64,
    /// Bytes of outbox values held whole in memory, and how many are in the file only.
    outbox_memory: u64,
    outbox_on_disk: u64,
    outbox_budget: u64,
}

impl Default for Maps {
    fn default() -> Self {
        Maps {
            trees: Default::default(),
            live_bytes: 0,
            outbox_memory: 0,
            outbox_on_disk: 0,
            outbox_budget: DEFAULT_OUTBOX_BUDGET,
        }
    }
}

impl Maps {
    /// Applies one op; `place` is where the value lies in the log file, if it is there (so a
    /// push beyond the budget can be left in it).
    fn apply(&mut self, tree: usize, key: &[u8], value: Option<&[u8]>, place: Option<(&Arc<File>, u64)>) {
        let stored = value.map(|value| self.place(tree, value, place));
        if let Some(stored) = &stored {
            self.live_bytes += op_len(key, Some(stored.len())) as u64;
            self.count(tree, stored, true);
        }
        let map = &mut self.trees[tree];
        let old = match stored {
            Some(stored) => map.insert(key.to_vec(), stored),
            None => map.remove(key),
        };
        if let Some(old) = old {
            self.live_bytes -= op_len(key, Some(old.len())) as u64;
            self.count(tree, &old, false);
        }
    }

    fn place(&self, tree: usize, value: &[u8], place: Option<(&Arc<File>, u64)>) -> Stored {
        let over = self.outbox_memory.saturating_add(value.len() as u64) > self.outbox_budget;
        match (TREES[tree], place) {
            (Tree::Outbox, Some((file, offset))) if over => {
                match super::outbox::push_head_len(value).filter(|head| *head < value.len()) {
                    Some(head) => {
                        Stored::Disk { head: value[..head].into(), file: file.clone(), offset, len: value.len() as u32 }
                    }
                    None => Stored::Mem(value.to_vec()),
                }
            }
            _ => Stored::Mem(value.to_vec()),
        }
    }

    fn count(&mut self, tree: usize, stored: &Stored, added: bool) {
        if TREES[tree] != Tree::Outbox {
            return;
        }
        match stored {
            Stored::Mem(value) if added => self.outbox_memory += value.len() as u64,
            Stored::Mem(value) => self.outbox_memory -= value.len() as u64,
            Stored::Disk { .. } if added => self.outbox_on_disk += 1,
            Stored::Disk { .. } => self.outbox_on_disk -= 1,
        }
    }
}

#[derive(Debug)]
struct Writer {
    file: Arc<File>,
    /// Where the next record goes: the end of the last whole record.
    len: u64,
    /// Compact when `len` reaches this.
    compact_at: u64,
    /// Reused for encoding records.
    buffer: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct CallLog {
    path: PathBuf,
    dir: PathBuf,
    maps: RwLock<Maps>,
    writer: Mutex<Writer>,
    /// The file the flusher syncs; replaced by compaction.
    current: ArcSwap<File>,
    file_bytes: AtomicU64,
    compactions: AtomicU64,
    compaction_micros: AtomicU64,
    /// Records appended since opening, and how many of them the last sync covered.
    appended: AtomicU64,
    synced: AtomicU64,
    /// A compaction renamed its file over the log but could not sync the directory: until a sync
    /// does, a power cut could bring the old file back, so [`CallLog::sync`] tries again first.
    dir_unsynced: AtomicBool,
}

impl CallLog {
    /// Opens (or creates) the log in `dir` and replays it. A torn last record is cut off, with a
    /// warning; a file that is not a call log is an error naming it.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path) -> Result<CallLog, Error> {
        CallLog::open_with_budget(dir, DEFAULT_OUTBOX_BUDGET)
    }

    /// Opens the log, holding at most `outbox_budget` bytes of waiting pushes in memory (pushes
    /// replayed beyond it keep only their header in memory).
    pub(crate) fn open_with_budget(dir: &Path, outbox_budget: u64) -> Result<CallLog, Error> {
        let path = dir.join(FILE_NAME);
        let io = |source| Error::Io { path: path.clone(), source };
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let file = Arc::new(file);
        let mut maps = Maps { outbox_budget, ..Maps::default() };
        let mut migrate = false;
        let size = file.metadata().map_err(io)?.len();
        let len = if size == 0 || creation_cut_short(&file, size) {
            if size > 0 {
                tracing::warn!(
                    path = %path.display(),
                    bytes = size,
                    "the call log holds only part of its header (its creation was cut off by a crash); it is started anew"
                );
            }
            file.write_all_at(MAGIC, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
            MAGIC.len() as u64
        } else {
            let (end, torn, version) = replay(&file, &path, &mut maps)?;
            if torn > 0 {
                tracing::warn!(
                    path = %path.display(),
                    offset = end,
                    bytes = torn,
                    "the call log ends in an incomplete record (a write cut off by a crash); it is dropped"
                );
                file.set_len(end).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            if version == 2 {
                upgrade_pushes(&mut maps).map_err(|reason| corrupt(&path, 0, &reason))?;
                migrate = true;
            }
            end
        };
        let compact_at = compact_threshold(maps.live_bytes);
        let log = CallLog {
            path,
            dir: dir.to_owned(),
            maps: RwLock::new(maps),
            current: ArcSwap::new(file.clone()),
            writer: Mutex::new(Writer { file, len, compact_at, buffer: Vec::new() }),
            file_bytes: AtomicU64::new(len),
            compactions: AtomicU64::new(0),
            compaction_micros: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            dir_unsynced: AtomicBool::new(false),
        };
        if migrate {
            log.rewrite_as_current()?;
        }
        Ok(log)
    }

    /// Rewrites a log opened at an older version as a snapshot of this one. Unlike a compaction,
    /// a failure is an error: appending to the old file would mix two versions in it.
    fn rewrite_as_current(&self) -> Result<(), Error> {
        let temporary = self.dir.join(format!("{FILE_NAME}.compact"));
        let io = |source| Error::Io { path: temporary.clone(), source };
        let (file, len, moved) = self.write_snapshot(&temporary).map_err(io)?;
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        let mut writer = self.lock_writer();
        self.install(&mut writer, file, len, moved);
        tracing::info!(path = %self.path.display(), bytes = len, "the call log was rewritten from version 2 to version 3");
        Ok(())
    }

    fn read_maps(&self) -> RwLockReadGuard<'_, Maps> {
        // Maps change only in `Maps::apply`, which cannot panic halfway: recover from poisoning.
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `file` (`len` bytes, a whole log) the one appends go to and reads see; the values
    /// kept on disk are repointed to their places in it (`moved`).
    fn install(&self, writer: &mut Writer, file: File, len: u64, moved: Vec<Moved>) {
        let file = Arc::new(file);
        self.repoint(&file, moved);
        writer.file = file.clone();
        writer.len = len;
        writer.compact_at = compact_threshold(len);
        self.current.store(file);
        self.file_bytes.store(len, Ordering::Relaxed);
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `ops` (call-path trees only) as one record, then applies them in memory. Called by
    /// the committer thread only. On failure nothing is applied and the next record overwrites
    /// whatever part of this one reached the file.
    pub(crate) fn append(&self, ops: &[&Op]) -> Result<(), String> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut writer = self.lock_writer();
        let writer = &mut *writer;
        writer.buffer.clear();
        let mut offsets = Vec::with_capacity(ops.len());
        encode_record(
            &mut writer.buffer,
            ops.iter().map(|(tree, key, value)| (*tree, key.as_slice(), value.as_deref())),
            Some(&mut offsets),
        )?;
        let base = writer.len;
        if let Err(err) = writer.file.write_all_at(&writer.buffer, writer.len) {
            // Cut off what part of the record reached the file (a full disk may take some of it),
            // so the file ends at the last whole record and gives its space back.
            let _ = writer.file.set_len(writer.len);
            return Err(format!("appending {} bytes to {}: {err}", writer.buffer.len(), self.path.display()));
        }
        writer.len += writer.buffer.len() as u64;
        self.file_bytes.store(writer.len, Ordering::Relaxed);
        self.appended.fetch_add(1, Ordering::SeqCst);
        {
            let mut maps = self.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for ((tree, key, value), offset) in ops.iter().zip(&offsets) {
                if let Some(code) = code(*tree) {
                    maps.apply(code, key, value.as_deref(), Some((&writer.file, base + offset)));
                }
            }
        }
        if writer.len >= writer.compact_at {
            self.compact(writer);
        }
        Ok(())
    }

    /// Makes the log whole again after a failed append or sync (the store's recovery thread,
    /// while the call log is faulted and nothing appends): rewrites it as a snapshot of the
    /// maps, synced, and renamed over the log, so everything they hold is on disk whatever the
    /// failed syncs left (after a failed `fdatasync` the kernel may have dropped the pages it
    /// could not write, and a later sync would not say so). A failure leaves the old file the
    /// log, and is returned.
    pub(crate) fn recover(&self) -> std::io::Result<u64> {
        let temporary = self.dir.join(format!("{FILE_NAME}.compact"));
        let mut writer = self.lock_writer();
        let appended = self.appended.load(Ordering::SeqCst);
        let (file, len, moved) = self.write_snapshot(&temporary).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })?;
        // From the rename on, the new file is the log.
        self.install(&mut writer, file, len, moved);
        if let Err(err) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
            self.dir_unsynced.store(true, Ordering::SeqCst);
            return Err(err);
        }
        self.dir_unsynced.store(false, Ordering::SeqCst);
        self.synced.fetch_max(appended, Ordering::SeqCst);
        Ok(len)
    }

    /// Rewrites the file as a snapshot of the maps. A failure before the rename is logged and
    /// the old file kept; the next attempt waits until the file has doubled. Once the rename is
    /// done the new file is the log, whatever follows: appending to the old one would write to a
    /// file no name leads to.
    fn compact(&self, writer: &mut Writer) {
        let started = std::time::Instant::now();
        let temporary = self.dir.join(format!("{FILE_NAME}.compact"));
        match self.write_snapshot(&temporary) {
            Ok((file, len, moved)) => {
                let before = writer.len;
                self.install(writer, file, len, moved);
                // The rename is durable once the directory is synced; until then a power cut
                // brings back the old file, which holds everything the snapshot does.
                if let Err(err) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
                    self.dir_unsynced.store(true, Ordering::SeqCst);
                    tracing::error!(path = %self.dir.display(), error = %err, "syncing the directory after compacting the call log failed; the next sync tries again");
                }
                self.compactions.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.compaction_micros.fetch_add(micros, Ordering::Relaxed);
                tracing::debug!(before, after = len, micros, "call log compacted");
            }
            Err(err) => {
                writer.compact_at = writer.len.saturating_mul(2);
                let _ = std::fs::remove_file(&temporary);
                tracing::error!(path = %temporary.display(), error = %err, "compacting the call log failed; it goes on growing");
            }
        }
    }

    /// Writes every live record to `temporary`, syncs it, and renames it over the log. The
    /// rename is the last step: an error means the old file is still the log. Values kept in the
    /// old file only are read from it and written to the new one; the answer says where each
    /// now is (tree code, key, offset), for [`CallLog::repoint`].
    fn write_snapshot(&self, temporary: &Path) -> std::io::Result<(File, u64, Vec<Moved>)> {
        let mut out = std::io::BufWriter::new(
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(temporary)?,
        );
        out.write_all(MAGIC)?;
        let mut len = MAGIC.len() as u64;
        let mut record = Vec::with_capacity(SNAPSHOT_RECORD_BYTES + 4096);
        let mut pending: Vec<SnapshotEntry<'_>> = Vec::new();
        let mut pending_bytes = 0;
        let mut moved = Vec::new();
        let maps = self.read_maps();
        for (code, map) in maps.trees.iter().enumerate() {
            for (key, value) in map {
                let (bytes, on_disk) = match value {
                    Stored::Mem(bytes) => (std::borrow::Cow::Borrowed(&bytes[..]), false),
                    Stored::Disk { .. } => (std::borrow::Cow::Owned(value.read()?), true),
                };
                pending_bytes += op_len(key, Some(bytes.len()));
                pending.push((code, key, bytes, on_disk));
                if pending_bytes >= SNAPSHOT_RECORD_BYTES {
                    len += flush_snapshot_record(&mut out, &mut record, &mut pending, len, &mut moved)?;
                    pending_bytes = 0;
                }
            }
        }
        len += flush_snapshot_record(&mut out, &mut record, &mut pending, len, &mut moved)?;
        drop(maps);
        let file = out.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        std::fs::rename(temporary, &self.path)?;
        Ok((file, len, moved))
    }

    /// Points the values a snapshot moved at their place in the new file. Run by the committer
    /// (the only writer), right after the snapshot, so nothing changed them in between; until
    /// then readers read them from the old file, still open.
    fn repoint(&self, file: &Arc<File>, moved: Vec<Moved>) {
        if moved.is_empty() {
            return;
        }
        let mut maps = self.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (code, key, new_offset) in moved {
            if let Some(Stored::Disk { file: at, offset, .. }) = maps.trees[code].get_mut(&key) {
                *at = file.clone();
                *offset = new_offset;
            }
        }
    }

    /// Whether each of these outbox keys is held whole in memory (or absent).
    pub(crate) fn in_memory(&self, tree: Tree, keys: &[Vec<u8>]) -> bool {
        let Some(code) = code(tree) else { return true };
        let maps = self.read_maps();
        keys.iter().all(|key| !matches!(maps.trees[code].get(key), Some(Stored::Disk { .. })))
    }

    /// `fdatasync` of the file records are appended to now.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        if self.dir_unsynced.swap(false, Ordering::SeqCst) {
            if let Err(err) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
                self.dir_unsynced.store(true, Ordering::SeqCst);
                return Err(err);
            }
        }
        let appended = self.appended.load(Ordering::SeqCst);
        self.current.load_full().sync_data()?;
        self.synced.fetch_max(appended, Ordering::SeqCst);
        Ok(())
    }

    /// Whether records were appended since the last sync began.
    pub(crate) fn unsynced(&self) -> bool {
        self.appended.load(Ordering::SeqCst) > self.synced.load(Ordering::SeqCst)
    }

    /// One value; one kept in the file only is read from it (blocking).
    pub(crate) fn get(&self, tree: Tree, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        let Some(code) = code(tree) else { return Ok(None) };
        let stored = self.read_maps().trees[code].get(key).cloned();
        stored.map(|stored| stored.read()).transpose()
    }

    /// Up to `max` entries whose keys start with `prefix`, in key order.
    /// Values kept in the file only are read from it (blocking).
    pub(crate) fn scan(&self, tree: Tree, prefix: &[u8], max: usize) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some(code) = code(tree) else { return Ok(Vec::new()) };
        let entries: Vec<(Vec<u8>, Stored)> = {
            let maps = self.read_maps();
            maps.trees[code]
                .range(prefix.to_vec()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .take(max)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        };
        entries.into_iter().map(|(key, stored)| Ok((key, stored.read()?))).collect()
    }

    /// Calls `visit` with each entry whose key starts with `prefix`, in key order, until it
    /// answers `false`: with what memory holds of its value (for a push kept in the file only,
    /// its head: layout, header length, header). Holds the maps' read lock meanwhile: `visit`
    /// must be quick.
    pub(crate) fn visit(&self, tree: Tree, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8]) -> bool) {
        let Some(code) = code(tree) else { return };
        let maps = self.read_maps();
        for (key, value) in maps.trees[code].range(prefix.to_vec()..).take_while(|(key, _)| key.starts_with(prefix)) {
            if !visit(key, value.in_memory()) {
                break;
            }
        }
    }

    /// Up to `max` keys starting with `prefix`, in key order, whose values are in the file only
    /// (pushes beyond the budget), passing over those `skip` names.
    pub(crate) fn on_disk_keys(
        &self,
        tree: Tree,
        prefix: &[u8],
        skip: impl Fn(&[u8]) -> bool,
        max: usize,
    ) -> Vec<Vec<u8>> {
        let Some(code) = code(tree) else { return Vec::new() };
        let maps = self.read_maps();
        maps.trees[code]
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(key, value)| matches!(value, Stored::Disk { .. }) && !skip(key))
            .take(max)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Whether the tree holds `key`.
    pub(crate) fn contains(&self, tree: Tree, key: &[u8]) -> bool {
        code(tree).is_some_and(|code| self.read_maps().trees[code].contains_key(key))
    }

    /// Whether some waiting push has its body in the file only: the budget is used up.
    pub(crate) fn over_budget(&self) -> bool {
        self.read_maps().outbox_on_disk > 0
    }

    /// The first key at or after `from`, in key order.
    pub(crate) fn first_key_from(&self, tree: Tree, from: &[u8]) -> Option<Vec<u8>> {
        let code = code(tree)?;
        self.read_maps().trees[code].range(from.to_vec()..).next().map(|(key, _)| key.clone())
    }

    /// How many keys start with `prefix`, counting up to `max`.
    pub(crate) fn count(&self, tree: Tree, prefix: &[u8], max: usize) -> usize {
        let Some(code) = code(tree) else { return 0 };
        let maps = self.read_maps();
        maps.trees[code].range(prefix.to_vec()..).take_while(|(key, _)| key.starts_with(prefix)).take(max).count()
    }

    pub(crate) fn stats(&self) -> CallLogStats {
        let maps = self.read_maps();
        CallLogStats {
            file_bytes: self.file_bytes.load(Ordering::Relaxed),
            live_bytes: maps.live_bytes,
            outbox_memory_bytes: maps.outbox_memory,
            outbox_on_disk: maps.outbox_on_disk,
            compactions: self.compactions.load(Ordering::Relaxed),
            compaction_micros: self.compaction_micros.load(Ordering::Relaxed),
        }
    }
}

fn compact_threshold(live_bytes: u64) -> u64 {
    (live_bytes + MAGIC.len() as u64).saturating_mul(COMPACT_RATIO).max(COMPACT_MIN_BYTES)
}

/// The bytes one op takes in a record, for a value of `value` bytes (`None`: a removal).
fn op_len(key: &[u8], value: Option<usize>) -> usize {
    1 + 4 + key.len() + 4 + value.unwrap_or(0)
}

/// Appends one framed record holding `ops` to `out`; with `offsets`, notes where each op's
/// value begins, from the record's start (removals too, where their value would be).
fn encode_record<'a>(
    out: &mut Vec<u8>,
    ops: impl Iterator<Item = Write<'a>>,
    mut offsets: Option<&mut Vec<u64>>,
) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    for (tree, key, value) in ops {
        let code = code(tree).ok_or_else(|| format!("tree {} is not kept in the call log", tree.name()))?;
        let too_long =
            |what: &str, len: usize| format!("a {what} of {len} bytes in {} is too long for the call log", tree.name());
        out.push(code as u8);
        out.extend_from_slice(&u32::try_from(key.len()).map_err(|_| too_long("key", key.len()))?.to_le_bytes());
        out.extend_from_slice(key);
        if let Some(offsets) = offsets.as_deref_mut() {
            offsets.push((out.len() + 4 - start) as u64);
        }
        match value {
            Some(value) => {
                let len = u32::try_from(value.len()).ok().filter(|len| *len != REMOVED);
                out.extend_from_slice(&len.ok_or_else(|| too_long("value", value.len()))?.to_le_bytes());
                out.extend_from_slice(value);
            }
            None => out.extend_from_slice(&REMOVED.to_le_bytes()),
        }
    }
    let payload_len = out.len() - start - 8;
    let payload_len = u32::try_from(payload_len)
        .ok()
        .filter(|len| *len <= MAX_RECORD_BYTES)
        .ok_or_else(|| format!("a batch of {payload_len} bytes is too large for one call log record"))?;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// An entry a snapshot writes: tree code, key, value, and whether the value is kept on disk only.
type SnapshotEntry<'a> = (usize, &'a [u8], std::borrow::Cow<'a, [u8]>, bool);

/// A value a snapshot moved from the old file to the new: tree code, key, offset in the new file.
type Moved = (usize, Vec<u8>, u64);

/// Writes the pending entries as one record at `at` in the snapshot; notes where the values
/// that are kept in the file only now lie.
fn flush_snapshot_record(
    out: &mut impl std::io::Write,
    record: &mut Vec<u8>,
    pending: &mut Vec<SnapshotEntry<'_>>,
    at: u64,
    moved: &mut Vec<Moved>,
) -> std::io::Result<u64> {
    if pending.is_empty() {
        return Ok(0);
    }
    record.clear();
    let mut offsets = Vec::with_capacity(pending.len());
    encode_record(
        record,
        pending.iter().map(|(code, key, value, _)| (TREES[*code], *key, Some(&value[..]))),
        Some(&mut offsets),
    )
    .map_err(std::io::Error::other)?;
    for ((code, key, _, on_disk), offset) in pending.drain(..).zip(offsets) {
        if on_disk {
            moved.push((code, key.to_vec(), at + offset));
        }
    }
    out.write_all(record)?;
    Ok(record.len() as u64)
}

/// Whether a file of `size` bytes is what a crash while [`CallLog::open`] created it leaves:
/// shorter than the header or exactly as long, and holding a beginning of the header or zeros
/// (the file was extended but its bytes never reached the disk). No record was written, so the
/// log starts anew. Anything else short is not a call log, and an error.
fn creation_cut_short(file: &File, size: u64) -> bool {
    let Some(size) = usize::try_from(size).ok().filter(|size| *size <= MAGIC.len()) else { return false };
    let mut bytes = [0; MAGIC.len()];
    if file.read_exact_at(&mut bytes[..size], 0).is_err() {
        return false;
    }
    let bytes = &bytes[..size];
    (size < MAGIC.len() && MAGIC.starts_with(bytes)) || bytes.iter().all(|b| *b == 0)
}

/// Applies every whole record of `file` to `maps`. Returns where the whole records end, how
/// many bytes follow them (a torn record), and the file's version (2 or 3).
fn replay(file: &Arc<File>, path: &Path, maps: &mut Maps) -> Result<(u64, u64, u8), Error> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let total = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, &**file);
    let mut magic = [0; 8];
    let readable = total >= MAGIC.len() as u64 && reader.read_exact(&mut magic).is_ok();
    let version = match &magic {
        _ if !readable => None,
        magic if magic == MAGIC => Some(3),
        magic if magic == MAGIC_V2 => Some(2),
        _ => None,
    };
    let Some(version) = version else {
        return Err(corrupt(path, 0, "it does not start with a call log's header (PNCALLS3, or PNCALLS2)"));
    };
    let mut end = MAGIC.len() as u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0; 8];
        if total - end < 8 || reader.read_exact(&mut header).is_err() {
            break;
        }
        let (len, crc) = (le_u32(&header[..4]), le_u32(&header[4..]));
        if len == 0 || len > MAX_RECORD_BYTES || u64::from(len) > total - end - 8 {
            break;
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        // A version-2 log is converted in memory and rewritten: its values stay in memory.
        let place = (version == 3).then_some((file, end + 8));
        apply_payload(&payload, maps, place).map_err(|reason| corrupt(path, end, &reason))?;
        end += 8 + u64::from(len);
    }
    Ok((end, total - end, version))
}

/// Converts every push of a version-2 log to today's layout, in memory (the rewrite follows).
fn upgrade_pushes(maps: &mut Maps) -> Result<(), String> {
    let Some(outbox) = code(Tree::Outbox) else { return Ok(()) };
    let upgraded = maps.trees[outbox]
        .iter()
        .map(|(key, value)| {
            super::outbox::upgrade_push_record(key, value.in_memory()).map(|value| (key.clone(), value))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in upgraded {
        maps.apply(outbox, &key, Some(&value), None);
    }
    Ok(())
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a readable call log at byte {offset}: {reason}"),
        ),
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

/// Applies one record's ops. A record whose checksum matched but whose ops do not parse was
/// written by something else than this code: an error, not a torn write.
fn apply_payload(mut payload: &[u8], maps: &mut Maps, place: Option<(&Arc<File>, u64)>) -> Result<(), String> {
    let whole = payload.len();
    fn take<'a>(payload: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8], String> {
        if payload.len() < len {
            return Err(format!("a record ends inside an op's {what}"));
        }
        let (head, rest) = payload.split_at(len);
        *payload = rest;
        Ok(head)
    }
    while let Some((&tree, rest)) = payload.split_first() {
        payload = rest;
        if usize::from(tree) >= TREES.len() {
            return Err(format!("unknown tree code {tree}"));
        }
        let key_len = le_u32(take(&mut payload, 4, "key length")?) as usize;
        let key = take(&mut payload, key_len, "key")?;
        let value_length = le_u32(take(&mut payload, 4, "value length")?);
        let value_at = place.map(|(file, base)| (file, base + (whole - payload.len()) as u64));
        let value = match value_length {
            REMOVED => None,
            len => Some(take(&mut payload, len as usize, "value")?),
        };
        maps.apply(usize::from(tree), key, value, value_at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: Tree, key: &str, value: &str) -> Op {
        (tree, key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
    }

    fn remove(tree: Tree, key: &str) -> Op {
        (tree, key.as_bytes().to_vec(), None)
    }

    fn append(log: &CallLog, ops: &[Op]) {
        log.append(&ops.iter().collect::<Vec<_>>()).unwrap();
    }

    fn text(value: Option<Vec<u8>>) -> Option<String> {
        value.map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn what_was_appended_is_read_back_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = CallLog::open(dir.path()).unwrap();
            append(&log, &[put(Tree::Sessions, "s1", "one"), put(Tree::Outbox, "app\0events\x01", "p1")]);
            append(&log, &[put(Tree::Sessions, "s2", "two"), put(Tree::Outbox, "app\0events\x02", "p2")]);
            append(&log, &[remove(Tree::Sessions, "s1"), put(Tree::Sessions, "s2", "two again")]);
            assert_eq!(text(log.get(Tree::Sessions, b"s2").unwrap()), Some("two again".into()));
        }
        let log = CallLog::open(dir.path()).unwrap();
        assert_eq!(text(log.get(Tree::Sessions, b"s1").unwrap()), None, "a removal is replayed");
        assert_eq!(text(log.get(Tree::Sessions, b"s2").unwrap()), Some("two again".into()), "the latest value wins");
        let lane = log.scan(Tree::Outbox, b"app\0events\0", 10).unwrap();
        assert!(lane.is_empty(), "a prefix selects only its own keys");
        let lane = log.scan(Tree::Outbox, b"app\0events", 1).unwrap();
        assert_eq!(lane.len(), 1, "at most `max`");
        assert_eq!(lane[0].1, b"p1", "in key order");
        assert_eq!(log.count(Tree::Outbox, b"app\0events", 10), 2);
        assert_eq!(log.count(Tree::Outbox, b"app\0events", 1), 1, "counting stops at `max`");
        assert_eq!(log.get(Tree::Outbox, b"s2").unwrap(), None, "trees are apart");
    }

    #[test]
    fn a_torn_last_record_is_dropped_whole_and_the_log_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let kept_end = {
            let log = CallLog::open(dir.path()).unwrap();
            append(&log, &[put(Tree::Sessions, "kept", "1")]);
            log.stats().file_bytes
        };
        {
            let log = CallLog::open(dir.path()).unwrap();
            append(&log, &[put(Tree::Sessions, "torn-a", "2"), put(Tree::Sessions, "torn-b", "3")]);
        }
        let whole = std::fs::metadata(&path).unwrap().len();
        for cut in [1, 5, 9, 20] {
            let copy = tempfile::tempdir().unwrap();
            std::fs::copy(&path, copy.path().join(FILE_NAME)).unwrap();
            OpenOptions::new().write(true).open(copy.path().join(FILE_NAME)).unwrap().set_len(whole - cut).unwrap();
            let log = CallLog::open(copy.path()).unwrap();
            let len = std::fs::metadata(copy.path().join(FILE_NAME)).unwrap().len();
            assert_eq!(len, kept_end, "cut {cut}: the torn record is cut off the file");
            assert_eq!(text(log.get(Tree::Sessions, b"kept").unwrap()), Some("1".into()), "cut {cut}");
            assert_eq!(log.get(Tree::Sessions, b"torn-a").unwrap(), None, "cut {cut}: the torn batch is gone whole");
            assert_eq!(log.get(Tree::Sessions, b"torn-b").unwrap(), None, "cut {cut}: the torn batch is gone whole");
            append(&log, &[put(Tree::Sessions, "after", "4")]);
            drop(log);
            let log = CallLog::open(copy.path()).unwrap();
            assert_eq!(
                text(log.get(Tree::Sessions, b"after").unwrap()),
                Some("4".into()),
                "cut {cut}: a later write is not lost"
            );
        }
    }

    #[test]
    fn a_tail_of_zeros_is_cut_off_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let log = CallLog::open(dir.path()).unwrap();
            append(&log, &[put(Tree::Sessions, "kept", "1")]);
        }
        let whole = std::fs::metadata(&path).unwrap().len();
        // What a file extended by a crash before its data reached the disk holds.
        OpenOptions::new().write(true).open(&path).unwrap().set_len(whole + 4096).unwrap();
        let log = CallLog::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "the zeros are cut off");
        assert_eq!(text(log.get(Tree::Sessions, b"kept").unwrap()), Some("1".into()));
        append(&log, &[put(Tree::Sessions, "after", "2")]);
        drop(log);
        let log = CallLog::open(dir.path()).unwrap();
        assert_eq!(
            text(log.get(Tree::Sessions, b"after").unwrap()),
            Some("2".into()),
            "the next record follows the whole ones"
        );
    }

    #[test]
    fn a_flipped_byte_ends_the_replay_at_that_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let log = CallLog::open(dir.path()).unwrap();
            append(&log, &[put(Tree::Sessions, "first", "1")]);
            append(&log, &[put(Tree::Sessions, "second", "2")]);
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let log = CallLog::open(dir.path()).unwrap();
        assert!(log.get(Tree::Sessions, b"first").unwrap().is_some());
        assert_eq!(log.get(Tree::Sessions, b"second").unwrap(), None, "a record failing its checksum is not applied");
    }

    #[test]
    fn a_header_cut_short_by_a_crash_at_creation_starts_the_log_anew() {
        // Found by `fuzz::a_cut_log_replays_the_records_before_the_cut`: a log cut inside its
        // 8-byte header was refused as "not a call log", so privnum would not start again after
        // a crash while it created the file.
        for bytes in [&b"P"[..], b"PNCALL", b"PNCALLS", &[0; 8], &[0; 3]] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
            let log = CallLog::open(dir.path()).unwrap();
            append(&log, &[put(Tree::Sessions, "s", "1")]);
            drop(log);
            let log = CallLog::open(dir.path()).unwrap();
            assert_eq!(text(log.get(Tree::Sessions, b"s").unwrap()), Some("1".into()), "{bytes:?}");
        }
        for bytes in [
            &b"X"[..],
            b"PNCALLS4",
            b"PNCALLS3"[..7].iter().chain(b"x").copied().collect::<Vec<_>>().as_slice(),
            &[0; 9],
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
            let err = CallLog::open(dir.path()).unwrap_err().to_string();
            assert!(err.contains(FILE_NAME) && err.contains("header"), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_call_log_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"something else entirely").unwrap();
        let err = CallLog::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE_NAME) && err.contains("header"), "{err}");
    }

    #[test]
    fn compaction_keeps_what_is_live_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = CallLog::open(dir.path()).unwrap();
        let value = "v".repeat(4000);
        // Sessions come and go; a few stay. Far more than the threshold passes through the log.
        let mut n = 0;
        while log.compactions.load(Ordering::Relaxed) < 2 {
            append(&log, &[put(Tree::Sessions, &format!("call-{n}"), &value)]);
            if n % 100 != 0 {
                append(&log, &[remove(Tree::Sessions, &format!("call-{n}"))]);
            }
            n += 1;
            assert!(n < 200_000, "compaction never ran");
        }
        let stats = log.stats();
        assert!(stats.file_bytes < COMPACT_MIN_BYTES, "{stats:?}");
        append(&log, &[put(Tree::Outbox, "after", "compaction")]);
        drop(log);
        let log = CallLog::open(dir.path()).unwrap();
        for k in 0..n {
            let kept = log.get(Tree::Sessions, format!("call-{k}").as_bytes()).unwrap().is_some();
            assert_eq!(kept, k % 100 == 0, "call-{k}");
        }
        assert_eq!(text(log.get(Tree::Outbox, b"after").unwrap()), Some("compaction".into()));
        assert!(!dir.path().join(format!("{FILE_NAME}.compact")).exists());
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// A value in the outbox's record layout 2: layout, header length, header, body.
    fn push_value(n: usize) -> Vec<u8> {
        let header = format!(r#"{{"id":{n}}}"#);
        let mut value = vec![2];
        value.extend_from_slice(&(header.len() as u32).to_le_bytes());
        value.extend_from_slice(header.as_bytes());
        value.extend_from_slice(format!(r#"{{"body":"{}"}}"#, "b".repeat(200 + n)).as_bytes());
        value
    }

    fn key(n: usize) -> Vec<u8> {
        let mut key = b"app\0events\0".to_vec();
        key.extend_from_slice(&(n as u64).to_be_bytes());
        key
    }

    #[test]
    fn pushes_beyond_the_budget_keep_their_header_in_memory_and_their_body_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log = CallLog::open_with_budget(dir.path(), 1000).unwrap();
        for n in 0..20 {
            let op: Op = (Tree::Outbox, key(n), Some(push_value(n)));
            let session: Op = (Tree::Sessions, format!("s{n}").into_bytes(), Some(b"session".to_vec()));
            log.append(&[&session, &op]).unwrap();
        }
        let stats = log.stats();
        assert!(stats.outbox_memory_bytes <= 1000, "{stats:?}");
        assert!(stats.outbox_on_disk >= 15, "{stats:?}");
        let check = |log: &CallLog, what: &str| {
            let all = log.scan(Tree::Outbox, b"app\0events\0", 100).unwrap();
            assert_eq!(all.len(), 20, "{what}");
            for (n, (k, value)) in all.iter().enumerate() {
                assert_eq!((k, value), (&key(n), &push_value(n)), "{what}: push {n} read back whole, in order");
            }
            let mut heads = Vec::new();
            log.visit(Tree::Outbox, b"app\0events\0", |_, value| {
                heads.push(value.to_vec());
                true
            });
            for (n, head) in heads.iter().enumerate() {
                assert!(push_value(n).starts_with(head), "{what}: push {n}'s head is its record's start");
                assert!(head.len() >= 5 + format!(r#"{{"id":{n}}}"#).len(), "{what}: the head holds the header");
            }
        };
        check(&log, "as written");
        // A compaction copies the bodies into the new file.
        log.compact(&mut log.lock_writer());
        assert_eq!(log.compactions.load(Ordering::Relaxed), 1);
        check(&log, "after a compaction");
        // Delivered pushes leave; memory frees, and later pushes fit again.
        for n in 0..20 {
            let op: Op = (Tree::Outbox, key(n), None);
            log.append(&[&op]).unwrap();
        }
        assert_eq!((log.stats().outbox_memory_bytes, log.stats().outbox_on_disk), (0, 0));
        for n in 0..20 {
            let op: Op = (Tree::Outbox, key(n), Some(push_value(n)));
            log.append(&[&op]).unwrap();
        }
        drop(log);
        let log = CallLog::open_with_budget(dir.path(), 1000).unwrap();
        assert!(log.stats().outbox_on_disk >= 15, "replayed beyond the budget: {:?}", log.stats());
        check(&log, "after reopening");
        assert_eq!(log.get(Tree::Sessions, b"s3").unwrap(), Some(b"session".to_vec()));
    }
}

/// Properties of replay on real logs, cut short and damaged (crate::fuzzing says how many cases
/// and how to run more): a log cut anywhere replays exactly the records wholly written before
/// the cut; a damaged byte ends the replay at the record it is in, and no damaged record is
/// applied.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    type Batch = Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>;
    type State = [BTreeMap<Vec<u8>, Vec<u8>>; TREES.len()];

    /// Batches of writes on few keys, so that values are replaced and removed.
    fn batches() -> impl Strategy<Value = Vec<Batch>> {
        let tree = prop_oneof![Just(Tree::Outbox), Just(Tree::Sessions)];
        let key = proptest::collection::vec(b'a'..=b'd', 1..4);
        let value = proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..48));
        let batch = proptest::collection::vec((tree, key, value), 1..6);
        proptest::collection::vec(batch, 1..12)
    }

    /// What the first `batches` leave in the maps.
    fn model(batches: &[Batch]) -> State {
        let mut maps = Maps::default();
        for (tree, key, value) in batches.iter().flatten() {
            maps.apply(code(*tree).unwrap(), key, value.as_deref(), None);
        }
        whole(&maps)
    }

    /// The maps' values, whole (read from the file where they are kept there only).
    fn whole(maps: &Maps) -> State {
        maps.trees
            .each_ref()
            .map(|tree| tree.iter().map(|(key, stored)| (key.clone(), stored.read().unwrap())).collect())
    }

    /// A real log of `batches`: its bytes, and where each batch's record ends.
    fn write_log(batches: &[Batch]) -> (Vec<u8>, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let log = CallLog::open(dir.path()).unwrap();
        let mut ends = Vec::new();
        for batch in batches {
            log.append(&batch.iter().collect::<Vec<_>>()).unwrap();
            ends.push(log.stats().file_bytes);
        }
        drop(log);
        (std::fs::read(dir.path().join(FILE_NAME)).unwrap(), ends)
    }

    fn state(log: &CallLog) -> State {
        whole(&log.read_maps())
    }

    /// Opens a log holding `bytes`, in a directory of its own.
    fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<CallLog, Error>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
        let log = CallLog::open(dir.path());
        (dir, log)
    }

    /// How many records end at or before `offset`.
    fn whole_before(ends: &[u64], offset: u64) -> usize {
        ends.iter().take_while(|end| **end <= offset).count()
    }

    /// Checks that a log cut at `cut` opens with the records wholly before the cut, is cut back
    /// to their end, and takes a new record that a reopening finds.
    fn check_cut(batches: &[Batch], bytes: &[u8], ends: &[u64], cut: usize) -> Result<(), TestCaseError> {
        let (dir, log) = open_bytes(&bytes[..cut]);
        let log = log.map_err(|err| TestCaseError::fail(format!("cut at {cut}: {err}")))?;
        let kept = whole_before(ends, cut as u64);
        prop_assert_eq!(state(&log), model(&batches[..kept]), "cut at {}", cut);
        let end = if kept == 0 { MAGIC.len() as u64 } else { ends[kept - 1] };
        prop_assert_eq!(std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(), end, "cut at {}", cut);
        let after: Batch = vec![(Tree::Sessions, b"after".to_vec(), Some(b"the cut".to_vec()))];
        log.append(&after.iter().collect::<Vec<_>>()).unwrap();
        drop(log);
        let log = CallLog::open(dir.path()).unwrap();
        let mut expected = batches[..kept].to_vec();
        expected.push(after);
        prop_assert_eq!(state(&log), model(&expected), "cut at {}: a record after the cut", cut);
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(128))]

        /// A log cut short at any byte (a crash mid-write) opens with exactly the records
        /// wholly written before the cut: the prefix property.
        #[test]
        fn a_cut_log_replays_the_records_before_the_cut(batches in batches(), at: prop::sample::Index) {
            let (bytes, ends) = write_log(&batches);
            check_cut(&batches, &bytes, &ends, at.index(bytes.len() + 1))?;
        }

        /// Damaged bytes after the header end the replay at the first damaged record: the
        /// records before it come back, the damaged one and those after it are not applied.
        #[test]
        fn damaged_bytes_end_the_replay_at_their_record(
            batches in batches(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
        ) {
            let (mut bytes, ends) = write_log(&batches);
            let span = bytes.len() - MAGIC.len();
            let mut first = usize::MAX;
            for (at, mask) in &flips {
                let at = MAGIC.len() + at.index(span);
                bytes[at] ^= mask;
                first = first.min(at);
            }
            let (_dir, log) = open_bytes(&bytes);
            let log = log.map_err(|err| TestCaseError::fail(format!("damage at {first}: {err}")))?;
            let kept = whole_before(&ends, first as u64);
            prop_assert_eq!(state(&log), model(&batches[..kept]), "first damage at {}", first);
        }

        /// A damaged file header is refused, naming the file (unless the damage spells the
        /// older version's header, which is then read as one), never a panic.
        #[test]
        fn a_damaged_header_is_refused_by_name(batches in batches(), at in 0..MAGIC.len(), mask in 1..=255u8) {
            let (mut bytes, _) = write_log(&batches);
            bytes[at] ^= mask;
            let (_dir, log) = open_bytes(&bytes);
            if &bytes[..MAGIC.len()] != MAGIC_V2 {
                let err = log.unwrap_err().to_string();
                prop_assert!(err.contains(FILE_NAME) && err.contains("header"), "{}", err);
            }
        }

        /// Garbage after the last whole record (a torn write of something) is cut off, and
        /// every record before it comes back.
        #[test]
        fn garbage_after_the_records_is_cut_off(batches in batches(), garbage in proptest::collection::vec(any::<u8>(), 1..64)) {
            let (mut bytes, ends) = write_log(&batches);
            let whole = bytes.len();
            bytes.extend_from_slice(&garbage);
            let (dir, log) = open_bytes(&bytes);
            prop_assert_eq!(state(&log.unwrap()), model(&batches));
            prop_assert_eq!(std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(), whole as u64);
            prop_assert_eq!(*ends.last().unwrap(), whole as u64);
        }
    }

    /// Every cut of one log, byte by byte, including those inside the file's own header (a
    /// crash while the log was being created) and inside a record's header.
    #[test]
    fn every_cut_of_a_log_replays_the_records_before_it() {
        let batches: Vec<Batch> = vec![
            vec![(Tree::Sessions, b"s1".to_vec(), Some(b"one".to_vec()))],
            vec![(Tree::Outbox, b"p1".to_vec(), Some(vec![7; 20])), (Tree::Sessions, b"s2".to_vec(), Some(vec![]))],
            vec![(Tree::Sessions, b"s1".to_vec(), None)],
            vec![(Tree::Outbox, b"p1".to_vec(), Some(b"again".to_vec()))],
        ];
        let (bytes, ends) = write_log(&batches);
        for cut in 0..=bytes.len() {
            check_cut(&batches, &bytes, &ends, cut).unwrap();
        }
    }
}
