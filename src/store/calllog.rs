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
//! Memory: everything live is held in the maps, so their size is the calls under way plus the
//! pushes not yet delivered. While a customer's receiver is down, its pushes wait here for up to
//! the retry schedule's length (`/metrics`: `privnum_call_log_live_bytes`); those whose retries
//! run out move to the dead letters, in sled.
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
}

#[derive(Debug, Default)]
struct Maps {
    trees: [BTreeMap<Vec<u8>, Vec<u8>>; TREES.len()],
    /// The bytes a snapshot of these maps would take.
    live_bytes: u64,
}

impl Maps {
    fn apply(&mut self, tree: usize, key: &[u8], value: Option<&[u8]>) {
        let map = &mut self.trees[tree];
        let old = match value {
            Some(value) => {
                self.live_bytes += op_len(key, Some(value)) as u64;
                map.insert(key.to_vec(), value.to_vec())
            }
            None => map.remove(key),
        };
        if let Some(old) = old {
            self.live_bytes -= op_len(key, Some(&old)) as u64;
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
    pub(crate) fn open(dir: &Path) -> Result<CallLog, Error> {
        let path = dir.join(FILE_NAME);
        let io = |source| Error::Io { path: path.clone(), source };
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let mut maps = Maps::default();
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
        let file = Arc::new(file);
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
        let (file, len) = self.write_snapshot(&temporary).map_err(io)?;
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        let mut writer = self.lock_writer();
        self.install(&mut writer, file, len);
        tracing::info!(path = %self.path.display(), bytes = len, "the call log was rewritten from version 2 to version 3");
        Ok(())
    }

    fn read_maps(&self) -> RwLockReadGuard<'_, Maps> {
        // Maps change only in `Maps::apply`, which cannot panic halfway: recover from poisoning.
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `file` (`len` bytes, a whole log) the one appends go to and reads see.
    fn install(&self, writer: &mut Writer, file: File, len: u64) {
        let file = Arc::new(file);
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
        encode_record(
            &mut writer.buffer,
            ops.iter().map(|(tree, key, value)| (*tree, key.as_slice(), value.as_deref())),
        )?;
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
            for (tree, key, value) in ops {
                if let Some(code) = code(*tree) {
                    maps.apply(code, key, value.as_deref());
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
        let (file, len) = self.write_snapshot(&temporary).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })?;
        // From the rename on, the new file is the log.
        self.install(&mut writer, file, len);
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
            Ok((file, len)) => {
                let before = writer.len;
                self.install(writer, file, len);
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
    /// rename is the last step: an error means the old file is still the log.
    fn write_snapshot(&self, temporary: &Path) -> std::io::Result<(File, u64)> {
        let mut out = std::io::BufWriter::new(
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(temporary)?,
        );
        out.write_all(MAGIC)?;
        let mut len = MAGIC.len() as u64;
        let mut record = Vec::with_capacity(SNAPSHOT_RECORD_BYTES + 4096);
        let mut pending: Vec<Write<'_>> = Vec::new();
        let mut pending_bytes = 0;
        let maps = self.read_maps();
        for (code, map) in maps.trees.iter().enumerate() {
            for (key, value) in map {
                pending.push((TREES[code], key, Some(value)));
                pending_bytes += op_len(key, Some(value));
                if pending_bytes >= SNAPSHOT_RECORD_BYTES {
                    len += flush_snapshot_record(&mut out, &mut record, &mut pending)?;
                    pending_bytes = 0;
                }
            }
        }
        len += flush_snapshot_record(&mut out, &mut record, &mut pending)?;
        drop(maps);
        let file = out.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        std::fs::rename(temporary, &self.path)?;
        Ok((file, len))
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

    /// One value.
    pub(crate) fn get(&self, tree: Tree, key: &[u8]) -> Option<Vec<u8>> {
        let code = code(tree)?;
        self.read_maps().trees[code].get(key).cloned()
    }

    /// Up to `max` entries whose keys start with `prefix`, in key order.
    pub(crate) fn scan(&self, tree: Tree, prefix: &[u8], max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Some(code) = code(tree) else { return Vec::new() };
        let maps = self.read_maps();
        maps.trees[code]
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(max)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
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
        CallLogStats {
            file_bytes: self.file_bytes.load(Ordering::Relaxed),
            live_bytes: self.read_maps().live_bytes,
            compactions: self.compactions.load(Ordering::Relaxed),
            compaction_micros: self.compaction_micros.load(Ordering::Relaxed),
        }
    }
}

fn compact_threshold(live_bytes: u64) -> u64 {
    (live_bytes + MAGIC.len() as u64).saturating_mul(COMPACT_RATIO).max(COMPACT_MIN_BYTES)
}

/// The bytes one op takes in a record.
fn op_len(key: &[u8], value: Option<&[u8]>) -> usize {
    1 + 4 + key.len() + 4 + value.map_or(0, <[u8]>::len)
}

/// Appends one framed record holding `ops` to `out`.
fn encode_record<'a>(out: &mut Vec<u8>, ops: impl Iterator<Item = Write<'a>>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    for (tree, key, value) in ops {
        let code = code(tree).ok_or_else(|| format!("tree {} is not kept in the call log", tree.name()))?;
        let too_long =
            |what: &str, len: usize| format!("a {what} of {len} bytes in {} is too long for the call log", tree.name());
        out.push(code as u8);
        out.extend_from_slice(&u32::try_from(key.len()).map_err(|_| too_long("key", key.len()))?.to_le_bytes());
        out.extend_from_slice(key);
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

fn flush_snapshot_record(
    out: &mut impl std::io::Write,
    record: &mut Vec<u8>,
    pending: &mut Vec<Write<'_>>,
) -> std::io::Result<u64> {
    if pending.is_empty() {
        return Ok(0);
    }
    record.clear();
    encode_record(record, pending.drain(..)).map_err(std::io::Error::other)?;
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
fn replay(file: &File, path: &Path, maps: &mut Maps) -> Result<(u64, u64, u8), Error> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let total = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
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
        apply_payload(&payload, maps).map_err(|reason| corrupt(path, end, &reason))?;
        end += 8 + u64::from(len);
    }
    Ok((end, total - end, version))
}

/// Converts every push of a version-2 log to today's layout, in memory (the rewrite follows).
fn upgrade_pushes(maps: &mut Maps) -> Result<(), String> {
    let Some(outbox) = code(Tree::Outbox) else { return Ok(()) };
    let upgraded = maps.trees[outbox]
        .iter()
        .map(|(key, value)| super::outbox::upgrade_push_record(key, value).map(|value| (key.clone(), value)))
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in upgraded {
        maps.apply(outbox, &key, Some(&value));
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
fn apply_payload(mut payload: &[u8], maps: &mut Maps) -> Result<(), String> {
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
        let value = match le_u32(take(&mut payload, 4, "value length")?) {
            REMOVED => None,
            len => Some(take(&mut payload, len as usize, "value")?),
        };
        maps.apply(usize::from(tree), key, value);
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
            assert_eq!(text(log.get(Tree::Sessions, b"s2")), Some("two again".into()));
        }
        let log = CallLog::open(dir.path()).unwrap();
        assert_eq!(text(log.get(Tree::Sessions, b"s1")), None, "a removal is replayed");
        assert_eq!(text(log.get(Tree::Sessions, b"s2")), Some("two again".into()), "the latest value wins");
        let lane = log.scan(Tree::Outbox, b"app\0events\0", 10);
        assert!(lane.is_empty(), "a prefix selects only its own keys");
        let lane = log.scan(Tree::Outbox, b"app\0events", 1);
        assert_eq!(lane.len(), 1, "at most `max`");
        assert_eq!(lane[0].1, b"p1", "in key order");
        assert_eq!(log.count(Tree::Outbox, b"app\0events", 10), 2);
        assert_eq!(log.count(Tree::Outbox, b"app\0events", 1), 1, "counting stops at `max`");
        assert_eq!(log.get(Tree::Outbox, b"s2"), None, "trees are apart");
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
            assert_eq!(text(log.get(Tree::Sessions, b"kept")), Some("1".into()), "cut {cut}");
            assert_eq!(log.get(Tree::Sessions, b"torn-a"), None, "cut {cut}: the torn batch is gone whole");
            assert_eq!(log.get(Tree::Sessions, b"torn-b"), None, "cut {cut}: the torn batch is gone whole");
            append(&log, &[put(Tree::Sessions, "after", "4")]);
            drop(log);
            let log = CallLog::open(copy.path()).unwrap();
            assert_eq!(
                text(log.get(Tree::Sessions, b"after")),
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
        assert_eq!(text(log.get(Tree::Sessions, b"kept")), Some("1".into()));
        append(&log, &[put(Tree::Sessions, "after", "2")]);
        drop(log);
        let log = CallLog::open(dir.path()).unwrap();
        assert_eq!(text(log.get(Tree::Sessions, b"after")), Some("2".into()), "the next record follows the whole ones");
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
        assert!(log.get(Tree::Sessions, b"first").is_some());
        assert_eq!(log.get(Tree::Sessions, b"second"), None, "a record failing its checksum is not applied");
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
            assert_eq!(text(log.get(Tree::Sessions, b"s")), Some("1".into()), "{bytes:?}");
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
            let kept = log.get(Tree::Sessions, format!("call-{k}").as_bytes()).is_some();
            assert_eq!(kept, k % 100 == 0, "call-{k}");
        }
        assert_eq!(text(log.get(Tree::Outbox, b"after")), Some("compaction".into()));
        assert!(!dir.path().join(format!("{FILE_NAME}.compact")).exists());
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
            maps.apply(code(*tree).unwrap(), key, value.as_deref());
        }
        maps.trees
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
        log.read_maps().trees.clone()
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
