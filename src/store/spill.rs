//! The outbox's spill: waiting pushes beyond the memory budget, on disk only, key and all.
//!
//! The call log keeps every waiting push's key and header in memory, and beyond
//! `push_memory_budget_mb` only those (the body stays in its file). While a customer's receiver
//! is down for hours that still grows by a few hundred bytes per push. So a lane's dispatcher
//! moves the pushes the log keeps on disk, and that its window does not hold, here
//! ([`Calls::spill_lane`](super::Calls::spill_lane)), and back into the log when its window has
//! room for them (`unspill_lane`).
//!
//! Each move out writes one segment: a file of one lane's pushes in key order, written whole,
//! synced, and only then are the log's copies removed. Memory keeps per segment its place (how
//! far it was read back) and the key at that place, about a hundred bytes however many pushes
//! it holds; a lane's pushes come back oldest first by merging its segments on those keys. So
//! memory grows by a segment per lane and spill (at most one a second while a receiver is down),
//! not by the pushes: at any call rate, an hour of outage adds a few hundred kilobytes.
//!
//! ```text
//! segment = MAGIC · lane length (u32 LE) · lane · record* · END · records (u64 LE)
//! record  = key length (u32 LE) · value length (u32 LE) · key · value · CRC-32 of key and value (u32 LE)
//! ```
//! `{id}.seg` in `outbox_spill/`, ids increasing; beside it `{id}.pos` says how far it was read
//! back (records, then byte offset; u64 LE each).
//!
//! Invariants:
//! - a move writes the destination durably before it removes the source (out: the segment is
//!   synced, with its directory, before the log's copies are removed; back: the log's record is
//!   synced before the segment's place moves on), so a crash may leave a push in both, never in
//!   neither; bringing back a push the log holds already keeps the log's copy;
//! - a segment without its end (a crash while it was written) holds nothing the log lost, and is
//!   deleted at opening;
//! - a lane's window reads the log only below the lane's first spilled key (`lane_waiting`), so
//!   a call's later pushes are never read before its earlier, spilled ones: order per call holds;
//! - the spilled pushes are never changed here: a push is retried, delivered or buried only
//!   once it is back in the log;
//! - a place is written without a sync: after a power cut or `kill -9` a segment may be read
//!   back from an older place, and pushes already delivered are sent again (at least once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Error;

/// The spill's directory, in the store's.
pub(crate) const DIR_NAME: &str = "outbox_spill";

const MAGIC: &[u8; 8] = b"PNSPILL1";
const END: &[u8; 8] = b"PNSPEND1";
/// A segment's end: [`END`] and its record count.
const END_LEN: u64 = 16;
/// A record's framing around its key and value.
const RECORD_HEAD: u64 = 8;
const RECORD_CRC: u64 = 4;

/// Outbox records as they move: key, record.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// One segment's state in memory.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    count: u64,
    /// Records read back, and the offset of the next.
    consumed: u64,
    offset: u64,
    /// Where the records end (the end marker's offset).
    end: u64,
    /// The next record's key and when its push was made (ms); `None` once read through.
    head: Option<(Vec<u8>, i64)>,
}

impl Segment {
    /// A damaged segment: what follows `err` cannot be framed. Its remaining pushes are lost,
    /// said once in the log; the lane goes on with its other segments.
    fn lose_rest(&mut self, err: &Error) {
        tracing::error!(path = %self.path.display(), lost = self.count - self.consumed, error = %err, "a spill segment is damaged; its remaining pushes are lost");
        self.consumed = self.count;
        self.head = None;
    }

    /// Reads the head at its place (none once read through, or when the segment is damaged).
    fn read_head(&mut self, file: &File) {
        match head_at(file, self) {
            Ok(head) => self.head = head,
            Err(err) => self.lose_rest(&err),
        }
    }
}

/// One lane's segments.
#[derive(Debug, Default)]
struct LaneSpill {
    segments: BTreeMap<u64, Segment>,
    /// Each segment's head key, for the merge: the lane's first spilled push is the first.
    heads: BTreeSet<(Vec<u8>, u64)>,
    /// Pushes not yet read back.
    count: u64,
    /// Pushes read back whose copies are not yet in the log: still counted as spilled.
    returning: u64,
}

impl LaneSpill {
    fn first(&self) -> Option<(Vec<u8>, i64)> {
        let (_, id) = self.heads.first()?;
        self.segments.get(id)?.head.clone()
    }

    fn insert(&mut self, id: u64, segment: Segment) {
        if let Some((key, _)) = &segment.head {
            self.heads.insert((key.clone(), id));
        }
        self.count += segment.count - segment.consumed;
        self.segments.insert(id, segment);
    }

    fn take_out(&mut self, id: u64) -> Option<Segment> {
        let segment = self.segments.remove(&id)?;
        if let Some((key, _)) = &segment.head {
            self.heads.remove(&(key.clone(), id));
        }
        self.count -= segment.count - segment.consumed;
        Some(segment)
    }
}

/// What a [`Spill::take`] read back: the segments' states before it, to put back if the records
/// do not reach the log.
#[derive(Debug)]
pub(crate) struct Taken {
    lane: Vec<u8>,
    before: Vec<(u64, Segment)>,
    /// Records read back and still counted as spilled, until [`Spill::returned`].
    returning: u64,
}

/// The spill. Each lane has a lock of its own, held while its segments are read, so one app's
/// reads never hold up another's look at its lane (the map's lock is held only to find a lane).
#[derive(Debug)]
pub(crate) struct Spill {
    dir: PathBuf,
    lanes: Mutex<HashMap<Vec<u8>, Arc<Mutex<LaneSpill>>>>,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("at byte {offset}: {reason}")),
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4]))
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))
}

/// The record at `offset`: key, value and the next record's offset. Checks its CRC.
fn read_record(file: &File, path: &Path, offset: u64, end: u64) -> Result<(Vec<u8>, Vec<u8>, u64), Error> {
    let mut head = [0u8; RECORD_HEAD as usize];
    file.read_exact_at(&mut head, offset).map_err(io_error(path))?;
    let (key_len, value_len) = (u64::from(le_u32(&head[..4])), u64::from(le_u32(&head[4..])));
    let next = offset + RECORD_HEAD + key_len + value_len + RECORD_CRC;
    if next > end {
        return Err(corrupt(path, offset, "a record runs past the segment's end"));
    }
    let mut body = vec![0u8; (key_len + value_len + RECORD_CRC) as usize];
    file.read_exact_at(&mut body, offset + RECORD_HEAD).map_err(io_error(path))?;
    let crc = le_u32(&body[body.len() - 4..]);
    body.truncate(body.len() - 4);
    if crc32fast::hash(&body) != crc {
        return Err(corrupt(path, offset, "a record fails its checksum"));
    }
    let value = body.split_off(key_len as usize);
    Ok((body, value, next))
}

/// When the push of this record was made (ms).
fn created_at(key: &[u8], value: &[u8]) -> Result<i64, Error> {
    super::outbox::decode_header(super::Tree::Outbox, key, value).map(|header| header.created_at_ms)
}

/// The head of a segment at its place (`None` once read through).
fn head_at(file: &File, segment: &Segment) -> Result<Option<(Vec<u8>, i64)>, Error> {
    if segment.consumed >= segment.count {
        return Ok(None);
    }
    let (key, value, _) = read_record(file, &segment.path, segment.offset, segment.end)?;
    let created = created_at(&key, &value)?;
    Ok(Some((key, created)))
}

impl Spill {
    /// Opens (or creates) the spill in `store_dir`: reads every segment's lane, end and place;
    /// deletes segments left unfinished by a crash, and those read through.
    pub(crate) fn open(store_dir: &Path) -> Result<Spill, Error> {
        let dir = store_dir.join(DIR_NAME);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut lanes: HashMap<Vec<u8>, LaneSpill> = HashMap::new();
        let mut next_id = 0;
        let mut ids: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|id| u64::from_str_radix(id, 16).ok()) {
                ids.push(id);
            } else if let Some(id) = name.strip_suffix(".pos").and_then(|id| u64::from_str_radix(id, 16).ok()) {
                if !dir.join(format!("{id:016x}.seg")).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        ids.sort_unstable();
        for id in ids {
            next_id = next_id.max(id + 1);
            let path = dir.join(format!("{id:016x}.seg"));
            match Spill::read_segment(&path)? {
                Some((lane, segment)) if segment.consumed < segment.count => {
                    lanes.entry(lane).or_default().insert(id, segment);
                }
                Some(_) => remove_segment(&path),
                None => {
                    tracing::warn!(path = %path.display(), "a spill segment left unfinished by a crash is deleted (its pushes are still in the call log)");
                    remove_segment(&path);
                }
            }
        }
        let spilled: u64 = lanes.values().map(|lane| lane.count).sum();
        if spilled > 0 {
            tracing::info!(spilled, lanes = lanes.len(), dir = %dir.display(), "waiting pushes found in the outbox's spill");
        }
        let lanes = lanes.into_iter().map(|(lane, spill)| (lane, Arc::new(Mutex::new(spill)))).collect();
        Ok(Spill { dir, lanes: Mutex::new(lanes), next_id: AtomicU64::new(next_id) })
    }

    /// A segment's lane and state, `None` if it has no end (unfinished).
    fn read_segment(path: &Path) -> Result<Option<(Vec<u8>, Segment)>, Error> {
        let file = File::open(path).map_err(io_error(path))?;
        let len = file.metadata().map_err(io_error(path))?.len();
        let mut header = [0u8; 12];
        if len < 12 + END_LEN || file.read_exact_at(&mut header, 0).is_err() || &header[..8] != MAGIC {
            return Ok(None);
        }
        let lane_len = u64::from(le_u32(&header[8..]));
        let start = 12 + lane_len;
        let mut end = [0u8; END_LEN as usize];
        if start + END_LEN > len || file.read_exact_at(&mut end, len - END_LEN).is_err() || &end[..8] != END {
            return Ok(None);
        }
        let mut lane = vec![0u8; lane_len as usize];
        file.read_exact_at(&mut lane, 12).map_err(io_error(path))?;
        let pos_path = path.with_extension("pos");
        let (consumed, offset) = match std::fs::read(&pos_path) {
            Ok(bytes) if bytes.len() == 16 => (le_u64(&bytes[..8]), le_u64(&bytes[8..])),
            _ => (0, start),
        };
        let mut segment = Segment {
            path: path.to_owned(),
            count: le_u64(&end[8..]),
            consumed,
            offset: offset.clamp(start, len - END_LEN),
            end: len - END_LEN,
            head: None,
        };
        segment.read_head(&file);
        Ok(Some((lane, segment)))
    }

    /// A lane's state, made if `create`.
    fn lane_spill(&self, lane: &[u8], create: bool) -> Option<Arc<Mutex<LaneSpill>>> {
        let mut lanes = lock(&self.lanes);
        match lanes.get(lane) {
            Some(spill) => Some(spill.clone()),
            None if create => Some(lanes.entry(lane.to_vec()).or_default().clone()),
            None => None,
        }
    }

    /// Writes one lane's records (in key order) as a new segment and makes it durable (the file
    /// and the directory synced). Blocking.
    pub(crate) fn put_durable(&self, lane: &[u8], records: &Records) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{id:016x}.seg"));
        let mut bytes = Vec::with_capacity(
            12 + lane.len() + records.iter().map(|(k, v)| k.len() + v.len() + 12).sum::<usize>() + END_LEN as usize,
        );
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(lane.len() as u32).to_le_bytes());
        bytes.extend_from_slice(lane);
        let start = bytes.len() as u64;
        for (key, value) in records {
            bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(key);
            crc.update(value);
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(&crc.finalize().to_le_bytes());
        }
        let end = bytes.len() as u64;
        bytes.extend_from_slice(END);
        bytes.extend_from_slice(&(records.len() as u64).to_le_bytes());
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()))
            .and_then(|()| File::open(&self.dir).and_then(|dir| dir.sync_all()));
        if let Err(source) = written {
            remove_segment(&path);
            return Err(Error::Io { path, source });
        }
        let (first_key, first_value) = &records[0];
        let segment = Segment {
            path,
            count: records.len() as u64,
            consumed: 0,
            offset: start,
            end,
            head: Some((first_key.clone(), created_at(first_key, first_value)?)),
        };
        if let Some(spill) = self.lane_spill(lane, true) {
            lock(&spill).insert(id, segment);
        }
        Ok(())
    }

    /// Reads back up to `max` of a lane's records, oldest first, merging its segments; their
    /// places move on in memory at once, and on disk at [`Spill::commit`]; [`Spill::restore`]
    /// puts them back if the records could not be written to the log. Blocking.
    pub(crate) fn take(&self, lane: &[u8], max: usize) -> Result<(Records, Taken), Error> {
        let mut taken = Taken { lane: lane.to_vec(), before: Vec::new(), returning: 0 };
        let mut records = Vec::new();
        let Some(spill) = self.lane_spill(lane, false) else { return Ok((records, taken)) };
        let mut spill = lock(&spill);
        let mut files: HashMap<u64, File> = HashMap::new();
        while records.len() < max {
            let Some((_, id)) = spill.heads.first().cloned() else { break };
            let Some(mut segment) = spill.take_out(id) else { break };
            if !taken.before.iter().any(|(taken_id, _)| *taken_id == id) {
                taken.before.push((id, segment.clone()));
            }
            let file = match files.entry(id) {
                std::collections::hash_map::Entry::Occupied(file) => file.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => match File::open(&segment.path) {
                    Ok(file) => slot.insert(file),
                    Err(source) => {
                        // Nothing read back: every segment as it was before this take.
                        let path = segment.path.clone();
                        spill.insert(id, segment);
                        for (id, before) in taken.before {
                            spill.take_out(id);
                            spill.insert(id, before);
                        }
                        return Err(Error::Io { path, source });
                    }
                },
            };
            let read = read_record(file, &segment.path, segment.offset, segment.end);
            let (key, value, next) = match read {
                Ok(record) => record,
                Err(err) => {
                    segment.lose_rest(&err);
                    spill.insert(id, segment);
                    continue;
                }
            };
            segment.consumed += 1;
            segment.offset = next;
            segment.read_head(file);
            spill.insert(id, segment);
            records.push((key, value));
        }
        taken.returning = records.len() as u64;
        spill.returning += taken.returning;
        Ok((records, taken))
    }

    /// The records a [`Spill::take`] read back are in the log now: no longer counted here.
    pub(crate) fn returned(&self, taken: &mut Taken) {
        if let Some(spill) = self.lane_spill(&taken.lane, false) {
            let mut spill = lock(&spill);
            spill.returning = spill.returning.saturating_sub(taken.returning);
        }
        taken.returning = 0;
    }

    /// Makes a [`Spill::take`] final: writes the places it moved and deletes the segments read
    /// through. Blocking.
    pub(crate) fn commit(&self, taken: Taken) -> Result<(), Error> {
        let mut done: Vec<PathBuf> = Vec::new();
        let mut places: Vec<(PathBuf, u64, u64)> = Vec::new();
        {
            let Some(shared) = self.lane_spill(&taken.lane, false) else { return Ok(()) };
            let mut spill = lock(&shared);
            for (id, _) in &taken.before {
                let Some(segment) = spill.segments.get(id) else { continue };
                if segment.consumed >= segment.count {
                    done.push(segment.path.clone());
                    spill.take_out(*id);
                } else {
                    places.push((segment.path.with_extension("pos"), segment.consumed, segment.offset));
                }
            }
            if spill.segments.is_empty() && spill.returning == 0 {
                drop(spill);
                lock(&self.lanes).remove(&taken.lane);
            }
        }
        for path in done {
            remove_segment(&path);
        }
        for (path, consumed, offset) in places {
            let mut bytes = consumed.to_le_bytes().to_vec();
            bytes.extend_from_slice(&offset.to_le_bytes());
            std::fs::write(&path, bytes).map_err(io_error(&path))?;
        }
        Ok(())
    }

    /// Undoes a [`Spill::take`] whose records did not reach the log.
    pub(crate) fn restore(&self, taken: Taken) {
        let Some(shared) = self.lane_spill(&taken.lane, true) else { return };
        let mut spill = lock(&shared);
        spill.returning = spill.returning.saturating_sub(taken.returning);
        for (id, segment) in taken.before {
            spill.take_out(id);
            spill.insert(id, segment);
        }
    }

    /// How many pushes of a lane are spilled (those being brought back included, until they are
    /// in the log), and its first spilled key with when its push was made. From memory.
    pub(crate) fn lane(&self, lane: &[u8]) -> (u64, Option<(Vec<u8>, i64)>) {
        let Some(spill) = self.lane_spill(lane, false) else { return (0, None) };
        let spill = lock(&spill);
        (spill.count + spill.returning, spill.first())
    }

    /// The first spilled key of a lane, if any. From memory.
    pub(crate) fn first_key(&self, lane: &[u8]) -> Option<Vec<u8>> {
        let spill = self.lane_spill(lane, false)?;
        let first = lock(&spill).first().map(|(key, _)| key);
        first
    }

    /// Every lane prefix with pushes spilled. From memory.
    pub(crate) fn lanes(&self) -> Vec<Vec<u8>> {
        let lanes: Vec<(Vec<u8>, Arc<Mutex<LaneSpill>>)> =
            lock(&self.lanes).iter().map(|(lane, spill)| (lane.clone(), spill.clone())).collect();
        lanes.into_iter().filter(|(_, spill)| lock(spill).count > 0).map(|(lane, _)| lane).collect()
    }
}

/// Deletes a segment and its place; a failure is logged (the segment is read through, or holds
/// nothing the log lost: at worst it is read again after a restart).
fn remove_segment(path: &Path) {
    for path in [path.to_owned(), path.with_extension("pos")] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(path = %path.display(), error = %err, "cannot delete a spill file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_record(id: u64) -> (Vec<u8>, Vec<u8>) {
        let mut key = super::super::keys::prefix(&["app", "events"]);
        key.extend_from_slice(&id.to_be_bytes());
        let push = super::super::outbox::Push {
            id,
            app_key: "app".into(),
            call: format!("call-{}", id % 3),
            lane: super::super::outbox::Lane::Events,
            body: serde_json::value::to_raw_value(&serde_json::json!({"n": id})).unwrap(),
            attempts: 0,
            created_at_ms: id as i64 * 10,
            next_attempt_at_ms: 0,
            last_error: None,
        };
        (key, super::super::outbox::encode_push(&push))
    }

    fn lane() -> Vec<u8> {
        super::super::keys::prefix(&["app", "events"])
    }

    fn ids(records: &Records) -> Vec<u64> {
        records.iter().map(|(key, _)| u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap())).collect()
    }

    #[test]
    fn segments_merge_back_in_key_order_and_keep_their_places_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spill = Spill::open(dir.path()).unwrap();
            // Two segments whose keys interleave (a late commit), and a third after both.
            spill.put_durable(&lane(), &[1, 4, 5].map(push_record).to_vec()).unwrap();
            spill.put_durable(&lane(), &[2, 3, 6].map(push_record).to_vec()).unwrap();
            spill.put_durable(&lane(), &[7, 8].map(push_record).to_vec()).unwrap();
            assert_eq!(spill.lane(&lane()).0, 8);
            assert_eq!(spill.first_key(&lane()), Some(push_record(1).0));
            let (records, taken) = spill.take(&lane(), 3).unwrap();
            assert_eq!(ids(&records), [1, 2, 3]);
            assert_eq!(records[0].1, push_record(1).1, "the record comes back whole");
            spill.restore(taken);
            assert_eq!(spill.lane(&lane()), (8, Some((push_record(1).0, 10))), "a restored take changed nothing");
            let (records, mut taken) = spill.take(&lane(), 5).unwrap();
            assert_eq!(ids(&records), [1, 2, 3, 4, 5]);
            spill.returned(&mut taken);
            spill.commit(taken).unwrap();
            assert_eq!(spill.lane(&lane()), (3, Some((push_record(6).0, 60))));
            let segments = std::fs::read_dir(dir.path().join(DIR_NAME)).unwrap().count();
            assert_eq!(segments, 2 + 1, "the first segment, read through, is gone; the second has a place");
        }
        let spill = Spill::open(dir.path()).unwrap();
        assert_eq!(spill.lanes(), [lane()]);
        let (records, mut taken) = spill.take(&lane(), 100).unwrap();
        assert_eq!(ids(&records), [6, 7, 8], "from the places written");
        spill.returned(&mut taken);
        spill.commit(taken).unwrap();
        assert!(spill.lanes().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join(DIR_NAME)).unwrap().count(), 0);
    }

    #[test]
    fn a_take_that_cannot_open_a_segment_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::open(dir.path()).unwrap();
        spill.put_durable(&lane(), &[1, 3].map(push_record).to_vec()).unwrap();
        spill.put_durable(&lane(), &[2, 4].map(push_record).to_vec()).unwrap();
        let second = dir.path().join(DIR_NAME).join(format!("{:016x}.seg", 1));
        let moved = second.with_extension("away");
        std::fs::rename(&second, &moved).unwrap();
        assert!(spill.take(&lane(), 10).is_err(), "the second segment cannot be opened");
        assert_eq!(spill.lane(&lane()), (4, Some((push_record(1).0, 10))), "as before the take");
        std::fs::rename(&moved, &second).unwrap();
        let (records, _) = spill.take(&lane(), 10).unwrap();
        assert_eq!(ids(&records), [1, 2, 3, 4]);
    }

    #[test]
    fn an_unfinished_segment_is_deleted_and_a_damaged_one_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spill = Spill::open(dir.path()).unwrap();
            spill.put_durable(&lane(), &[1, 2].map(push_record).to_vec()).unwrap();
            spill.put_durable(&lane(), &[3, 4].map(push_record).to_vec()).unwrap();
            spill.put_durable(&lane(), &[5].map(push_record).to_vec()).unwrap();
        }
        let path = |id: u64| dir.path().join(DIR_NAME).join(format!("{id:016x}.seg"));
        // A crash while the first was written: its end is missing.
        let bytes = std::fs::read(path(0)).unwrap();
        std::fs::write(path(0), &bytes[..bytes.len() - 3]).unwrap();
        // A flipped byte in the second's last record.
        let mut bytes = std::fs::read(path(1)).unwrap();
        let at = bytes.len() - END_LEN as usize - 6;
        bytes[at] ^= 0xff;
        std::fs::write(path(1), &bytes).unwrap();
        let spill = Spill::open(dir.path()).unwrap();
        assert!(!path(0).exists(), "the unfinished segment is gone");
        let (records, _) = spill.take(&lane(), 100).unwrap();
        assert_eq!(ids(&records), [3, 5], "the damaged record is skipped, the lane goes on");
    }
}
