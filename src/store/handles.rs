//! sled's handles, kept where the recovery thread can replace them.
//!
//! sled keeps its first I/O error for good: after a write or flush failed (a full disk), every
//! later write of that instance fails too, even once space is back. So recovering means opening
//! sled again in this process, and sled locks its directory while any handle is alive. Every
//! handle of the store (the database, its trees, the nonces' trees, sled's log file for
//! `fdatasync`) lives in one [`SledHandles`] in a [`SledSlot`]; readers and writers take it from
//! the slot for the duration of one operation, and the recovery thread empties the slot, lets
//! the old instance go, opens a new one and puts it back (`recover.rs`).
//!
//! Invariant: nothing keeps a `sled::Db` or `sled::Tree` beyond one operation but the slot, so
//! once the slot is emptied, the old instance is dropped as soon as the operations using it end.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::fault::{StoreFault, StorePart};
use super::{Error, Op, Tree};

/// How long `open` waits for another holder of the store's lock to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One open sled instance and every handle the store uses of it.
#[derive(Debug)]
pub(crate) struct SledHandles {
    pub(crate) db: sled::Db,
    /// Indexed by [`Tree`].
    pub(crate) trees: Vec<sled::Tree>,
    pub(crate) nonces: sled::Tree,
    pub(crate) nonce_expiry: sled::Tree,
    /// sled's log file (sled 0.34 keeps everything in `dir/db`), for `fdatasync` after a flush.
    pub(crate) file: File,
}

impl SledHandles {
    /// Opens sled in `dir` and every tree of the store, waiting up to 5 s while another holder
    /// has the directory locked (a store being closed, or an instance being replaced, lets go
    /// within moments).
    pub(crate) fn open(dir: &Path) -> Result<SledHandles, Error> {
        let open_error = |source| Error::Open { path: dir.to_owned(), source };
        let db = open_when_free(dir).map_err(|source| match source {
            sled::Error::Io(err) if is_lock_error(&err) => Error::Locked { path: dir.to_owned() },
            source => open_error(source),
        })?;
        let trees =
            Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<Result<Vec<_>, _>>().map_err(open_error)?;
        let nonces = db.open_tree("nonces").map_err(open_error)?;
        let nonce_expiry = db.open_tree("nonce_expiry").map_err(open_error)?;
        let path = dir.join("db");
        let file = File::open(&path).map_err(|source| Error::Io { path, source })?;
        Ok(SledHandles { db, trees, nonces, nonce_expiry, file })
    }

    pub(crate) fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    /// One sled transaction over the trees `ops` touch, applying them in order.
    pub(crate) fn apply(&self, ops: &[Op]) -> Result<(), String> {
        use sled::Transactional as _;
        // Only the trees this change touches take part: sled prepares every participant.
        let mut used: Vec<Tree> = ops.iter().map(|(tree, _, _)| *tree).collect();
        used.sort_by_key(|tree| *tree as usize);
        used.dedup();
        let participants: Vec<&sled::Tree> = used.iter().map(|tree| self.tree(*tree)).collect();
        let positions: Vec<usize> =
            ops.iter().map(|(tree, _, _)| used.iter().position(|t| t == tree).unwrap_or_default()).collect();
        let result = participants.as_slice().transaction(|trees| {
            for ((_, key, value), &position) in ops.iter().zip(&positions) {
                let tree = &trees[position];
                match value {
                    Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
                    None => tree.remove(key.as_slice())?,
                };
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        });
        result.map_err(|err| {
            let trees: Vec<&str> = used.iter().map(|tree| tree.name()).collect();
            format!("writing {} keys to {}: {err:?}", ops.len(), trees.join(", "))
        })
    }

    /// sled's flush, then `fdatasync` of its log: what makes sled's writes durable.
    pub(crate) fn flush(&self) -> Result<(), String> {
        self.db.flush().map_err(|err| format!("sled flush: {err}"))?;
        self.file.sync_data().map_err(|err| format!("fdatasync of the sled log: {err}"))
    }
}

/// sled reports a directory another holder has locked as a plain I/O error; its message is all
/// that tells it apart.
fn is_lock_error(err: &std::io::Error) -> bool {
    err.to_string().contains("could not acquire lock")
}

/// Opens sled in `dir`, waiting up to [`LOCK_WAIT`] while another holder has it locked. A store
/// being closed in this process lets go within moments (a flush in progress finishes first), so a
/// restart on the same directory waits for it instead of failing; another process holding it
/// for longer is still an error.
fn open_when_free(dir: &Path) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(dir).open() {
            Err(sled::Error::Io(err)) if is_lock_error(&err) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Where the store's sled instance lives; empty only while the recovery thread replaces it.
#[derive(Debug)]
pub(crate) struct SledSlot {
    current: ArcSwapOption<SledHandles>,
    dir: PathBuf,
}

impl SledSlot {
    pub(crate) fn new(handles: SledHandles, dir: &Path) -> SledSlot {
        SledSlot { current: ArcSwapOption::from_pointee(handles), dir: dir.to_owned() }
    }

    /// The instance now, for one operation; an error while it is being replaced.
    pub(crate) fn get(&self) -> Result<Arc<SledHandles>, Error> {
        self.current.load_full().ok_or_else(|| {
            Error::Unavailable(StoreFault {
                part: StorePart::Sled,
                error: format!("sled in {} is being opened again after a fault", self.dir.display()),
                since: std::time::SystemTime::now(),
            })
        })
    }

    /// Empties the slot, returning the instance it held.
    pub(crate) fn take(&self) -> Option<Arc<SledHandles>> {
        self.current.swap(None)
    }

    pub(crate) fn put(&self, handles: SledHandles) {
        self.current.store(Some(Arc::new(handles)));
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}
