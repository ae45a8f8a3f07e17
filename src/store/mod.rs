//! The store: apps, X numbers and bindings in sled, and what the call path writes (sessions,
//! pushes, recordings) in an append-only call log (`calllog.rs`), behind privnum's own API.
//!
//! The store is reached through narrow handles over one shared state ([`Store`] lists them and
//! what each owns): [`Bindings`], [`Apps`], [`Tones`], [`Nonces`], [`Calls`]. Nothing outside this
//! module names sled or the call log, so another backend can plug in behind the handles.
//!
//! Writes reach storage in one of four ways, each named for what it blocks:
//! `Shared::apply_now` (a sled transaction of its own, on this thread: the writer-lock holders),
//! `Shared::commit_blocking` (through the committer thread, blocking until applied),
//! `Shared::commit_async` (through the committer, awaited), and `Shared::enqueue` (through the
//! committer, not waited for).
//!
//! Invariants:
//! - every multi-key change (a binding and its indexes, a number and its pool entry) is one sled
//!   transaction, so a crash leaves either all of it or none; every call-path change is one
//!   record of the call log, with the same guarantee;
//! - changes to bindings and pools are serialized by one writer lock, because choosing a free X
//!   needs range scans that sled transactions cannot see; reads never take the lock;
//! - a change is acknowledged only after [`Store::durable`] has seen it flushed to disk.

mod allocation;
mod apps;
mod ax;
mod axb;
mod axe;
mod bindings;
mod calllog;
mod calls;
mod combine;
mod data;
mod fault;
mod flush;
mod handles;
pub(crate) mod keys;
mod nonce;
pub mod outbox;
mod pools;
mod record;
mod recover;
mod rulesets;
mod spill;
mod tones;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::domain::Rejection;

pub use apps::Apps;
pub use axb::AxbPage;
pub use axe::{AxeCursorPage, AxePage};
pub use bindings::Bindings;
pub use calllog::CallLogStats;
pub use calls::{AnsweredCall, Calls, ANSWERED_RETENTION_SECS, MAX_COUNTED};
pub use data::Data;
use fault::Health;
pub use fault::{HealthStats, StoreFault, StorePart};
pub use flush::FlushStats;
use flush::Scope;
use handles::{SledHandles, SledSlot};
pub use nonce::Nonces;
pub use rulesets::Rulesets;
pub use tones::Tones;

/// A storage failure, naming the tree and key concerned. Shown to operators, never to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("another privnum holds the data directory {path} (its lock stayed taken for 5 s): stop that one, or give this one a data_dir of its own")]
    Locked { path: PathBuf },
    #[error("sled failed on tree {tree}: {source}")]
    Sled { tree: &'static str, source: sled::Error },
    #[error("cannot decode the record at {tree}/{key}: {reason}")]
    Decode { tree: &'static str, key: String, reason: String },
    #[error("transaction failed: {0}")]
    Transaction(String),
    #[error("durable flush failed: {0}")]
    Flush(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A part of the store is faulted (`fault.rs`): the change was refused, or its wait for the
    /// disk spanned the fault.
    #[error("{0}")]
    Unavailable(StoreFault),
}

impl Error {
    /// This error again, for each of several changes that failed together (a batch): a fault
    /// stays a fault, anything else becomes its text.
    pub(crate) fn for_each(&self) -> Error {
        match self {
            Error::Unavailable(fault) => Error::Unavailable(fault.clone()),
            other => Error::Transaction(other.to_string()),
        }
    }
}

/// What a store operation can end in: the rules refused it, or storage failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] Error),
}

/// The trees of the store; see `keys.rs` for what each holds. The discriminant is the tree's index
/// in `Shared::trees`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tree {
    Apps,
    Numbers,
    AppArea,
    Axb,
    AxbUser,
    AxbX,
    AxbPairs,
    AxbExpiry,
    Outbox,
    OutboxDead,
    Sessions,
    Recordings,
    Tones,
    ToneAudio,
    Ax,
    AxX,
    AxA,
    Axe,
    AxeExt,
    AxeUser,
    AxeExpiry,
    AxeOrder,
    AxeCallback,
    AppData,
    AppDataExpiry,
    AppDataCount,
    Rulesets,
    RulesetActive,
    RulesetAudit,
    Answered,
    AnsweredExpiry,
}

impl Tree {
    const ALL: [Tree; 31] = [
        Tree::Apps,
        Tree::Numbers,
        Tree::AppArea,
        Tree::Axb,
        Tree::AxbUser,
        Tree::AxbX,
        Tree::AxbPairs,
        Tree::AxbExpiry,
        Tree::Outbox,
        Tree::OutboxDead,
        Tree::Sessions,
        Tree::Recordings,
        Tree::Tones,
        Tree::ToneAudio,
        Tree::Ax,
        Tree::AxX,
        Tree::AxA,
        Tree::Axe,
        Tree::AxeExt,
        Tree::AxeUser,
        Tree::AxeExpiry,
        Tree::AxeOrder,
        Tree::AxeCallback,
        Tree::AppData,
        Tree::AppDataExpiry,
        Tree::AppDataCount,
        Tree::Rulesets,
        Tree::RulesetActive,
        Tree::RulesetAudit,
        Tree::Answered,
        Tree::AnsweredExpiry,
    ];

    /// The trees the call path writes. They change only through the committer thread, in queue
    /// order, so a call's queued save can never land after a later one; direct transactions never
    /// touch them. A call-path change may also write other sled trees (the digits step writes its
    /// AXE callback record with the session); binding changes write that tree directly too, and
    /// sled serializes the two, in an order that does not matter there.
    pub(crate) fn is_call_path(self) -> bool {
        matches!(
            self,
            Tree::Outbox | Tree::OutboxDead | Tree::Sessions | Tree::Recordings | Tree::Answered | Tree::AnsweredExpiry
        )
    }

    /// The call-path trees kept in the call log rather than sled: what is short-lived and written
    /// at every step of a call (sessions, pushes waiting for delivery). Their sled trees are read
    /// only to move an older store's records into the log. Dead letters and recordings live for
    /// days and are written rarely, so they stay in sled, on disk rather than in memory.
    pub(crate) fn in_call_log(self) -> bool {
        matches!(self, Tree::Outbox | Tree::Sessions)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Tree::Apps => "apps",
            Tree::Numbers => "numbers",
            Tree::AppArea => "app_area",
            Tree::Axb => "axb",
            Tree::AxbUser => "axb_user",
            Tree::AxbX => "axb_x",
            Tree::AxbPairs => "axb_pairs",
            Tree::AxbExpiry => "axb_expiry",
            Tree::Outbox => "outbox",
            Tree::OutboxDead => "outbox_dead",
            Tree::Sessions => "sessions",
            Tree::Recordings => "recordings",
            Tree::Tones => "tones",
            Tree::ToneAudio => "tone_audio",
            Tree::Ax => "ax",
            Tree::AxX => "ax_x",
            Tree::AxA => "ax_a",
            Tree::Axe => "axe",
            Tree::AxeExt => "axe_ext",
            Tree::AxeUser => "axe_user",
            Tree::AxeExpiry => "axe_expiry",
            Tree::AxeOrder => "axe_order",
            Tree::AxeCallback => "axe_callback",
            Tree::AppData => "app_data",
            Tree::AppDataExpiry => "app_data_expiry",
            Tree::AppDataCount => "app_data_count",
            Tree::Rulesets => "rulesets",
            Tree::RulesetActive => "ruleset_active",
            Tree::RulesetAudit => "ruleset_audit",
            Tree::Answered => "answered",
            Tree::AnsweredExpiry => "answered_expiry",
        }
    }
}

/// A key for messages: text where it is text, escaped bytes otherwise.
pub(crate) fn show_key(key: &[u8]) -> String {
    key.escape_ascii().to_string().replace("\\x00", "/")
}

/// Applies a committed batch: the sled part in one transaction, then the call-log part as one
/// record. Nothing is applied when the sled part fails; when the log part fails after it, the
/// batch is reported failed with its sled part kept. The two parts reach the disk by different
/// syncs, so after a crash either may be there without the other: an answer that needs both waits
/// for [`Store::durable`], and a record moved between the two stores is moved in two commits
/// with that wait between them ([`Calls::bury`], [`Calls::revive`]).
fn apply_combined(sled: &SledSlot, calls: &calllog::CallLog, health: &Health, ops: &[Op]) -> Result<(), String> {
    let (logged, in_sled): (Vec<&Op>, Vec<&Op>) = ops.iter().partition(|(tree, _, _)| tree.in_call_log());
    // A batch queued before its part faulted is refused here, so nothing reaches a faulted part.
    if !in_sled.is_empty() {
        health.check(StorePart::Sled).map_err(|err| err.to_string())?;
        let in_sled: Vec<Op> = in_sled.into_iter().cloned().collect();
        write_sled(&*sled.get().map_err(|err| err.to_string())?, health, &in_sled)?;
    }
    if logged.is_empty() {
        return Ok(());
    }
    health.check(StorePart::CallLog).map_err(|err| err.to_string())?;
    let appended = health
        .injected(StorePart::CallLog)
        .map_err(|err| format!("appending {} writes to the call log: {err}", logged.len()))
        .and_then(|()| calls.append(&logged));
    if let Err(err) = &appended {
        health.fault(StorePart::CallLog, err);
    }
    appended
}

/// Applies `ops` to sled in one transaction; a failure faults sled.
fn write_sled(handles: &SledHandles, health: &Health, ops: &[Op]) -> Result<(), String> {
    let written = health
        .injected(StorePart::Sled)
        .map_err(|err| format!("writing {} keys to sled: {err}", ops.len()))
        .and_then(|()| handles.apply(ops));
    if let Err(err) = &written {
        health.fault(StorePart::Sled, err);
    }
    written
}

/// Which parts of the store `ops` write: (sled, the call log).
fn parts_written(ops: &[Op]) -> (bool, bool) {
    let logged = ops.iter().any(|(tree, _, _)| tree.in_call_log());
    let in_sled = ops.iter().any(|(tree, _, _)| !tree.in_call_log());
    (in_sled, logged)
}

/// One write: a tree, a key, and the new value (`None` removes the key).
pub(crate) type Op = (Tree, Vec<u8>, Option<Vec<u8>>);

/// Changes to commit together.
#[derive(Debug, Default)]
pub(crate) struct WriteSet {
    ops: Vec<Op>,
}

impl WriteSet {
    pub(crate) fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, tree: Tree, key: impl Into<Vec<u8>>) {
        self.ops.push((tree, key.into(), None));
    }
}

/// What every handle of a store shares: sled and its trees, the call log, the writer lock with
/// the pools, the in-memory copies the call path reads, the committer and the group flush. Only
/// `store/` sees it; everything outside reaches it through the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    /// sled's handles, replaced by the recovery thread after a fault (`handles.rs`).
    sled: Arc<SledSlot>,
    /// Which parts are faulted (`fault.rs`).
    health: Arc<Health>,
    /// Nonces in memory and in sled (`nonce.rs`), shared with the group flush.
    nonces: Arc<nonce::NonceBook>,
    writer: Mutex<pools::Pools>,
    /// Every app, for lock-free reads (`apps.rs`).
    apps: ArcSwap<apps::AppMap>,
    /// Approved tones per app, for lock-free checks on the call path (`tones.rs`).
    serving_tones: ArcSwap<tones::Serving>,
    combiner: combine::Combiner,
    /// Sessions and waiting pushes: the call path's short-lived records.
    log: Arc<calllog::CallLog>,
    /// Waiting pushes beyond the memory budget, key and all (`spill.rs`).
    spill: spill::Spill,
    /// AXB binds waiting for the writer lock, made together by whoever takes it (`axb.rs`).
    bind_queue: axb::BindQueue,
    flush: Arc<flush::GroupFlush>,
}

/// The store, as its owner holds it: opened once, then reached through its narrow handles, each
/// with the few methods its callers need. The handles are cheap clones of one shared state, so a
/// part of the server that needs one concern keeps just that handle (the pusher keeps
/// [`Calls`]). They are also the seam where another backend plugs in.
///
/// | handle | owns |
/// |---|---|
/// | [`Store::bindings`] | AXB, AX and AXE bindings, their indexes, expiry and AXE callback records; the call path's binding lookups |
/// | [`Store::apps`] | apps and their X-number pools |
/// | [`Store::tones`] | the tone registry: records, audio, the approved set |
/// | [`Store::data`] | customer data: the apps' items, their expiry, a count per app |
/// | [`Store::rulesets`] | customer rule sets: every version kept, the active one per app, the audit log |
/// | [`Store::nonces`] | replay protection |
/// | [`Store::calls`] | sessions, the outbox and its dead letters, recordings, answered calls (what rule sets count) |
///
/// Durability is the store's as a whole: [`Store::durable`] waits for everything committed before
/// it, [`Calls::durable`] for the call log alone.
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
    bindings: Bindings,
    apps: Apps,
    tones: Tones,
    nonces: Nonces,
    calls: Calls,
    data: Data,
    rulesets: Rulesets,
}

impl Store {
    /// Opens (or creates) the store in `dir`, replaying its call log, and starts its committer and
    /// group-commit flusher threads. While another holder has the directory locked, it waits up
    /// to 5 s (blocking this thread: it runs at start-up), then fails naming the directory.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        Store::open_with_push_budget(dir, calllog::DEFAULT_OUTBOX_BUDGET)
    }

    /// Like [`Store::open`], holding at most `push_memory_bytes` of waiting pushes in memory;
    /// beyond it, a push's body stays in the call log's file until it is sent
    /// (`push_memory_budget_mb`).
    pub fn open_with_push_budget(dir: &Path, push_memory_bytes: u64) -> Result<Store, Error> {
        let handles = SledHandles::open(dir)?;
        let log = Arc::new(calllog::CallLog::open_with_budget(dir, push_memory_bytes)?);
        move_call_records_to_log(&handles, &log, dir)?;
        let spill = spill::Spill::open(dir)?;
        let sled = Arc::new(SledSlot::new(handles, dir));
        let health = Arc::new(Health::default());
        let nonces = Arc::new(nonce::NonceBook::new(sled.clone(), health.clone()));
        // Nonces reach sled just before each of its flushes, so every change a signed request
        // made is durable with its nonce (`nonce.rs`).
        let flushed_nonces = nonces.clone();
        let before_sled_flush = Box::new(move || flushed_nonces.persist().map(|_| ()).map_err(|err| err.to_string()));
        let flush = flush::GroupFlush::start(sled.clone(), log.clone(), health.clone(), before_sled_flush, dir)
            .map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let (committer_sled, committer_log, committer_health) = (sled.clone(), log.clone(), health.clone());
        let combiner = combine::Combiner::start(Box::new(move |ops| {
            apply_combined(&committer_sled, &committer_log, &committer_health, ops)
        }))
        .map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let mut shared = Shared {
            sled,
            health,
            nonces,
            writer: Mutex::default(),
            apps: ArcSwap::default(),
            serving_tones: ArcSwap::default(),
            combiner,
            log,
            spill,
            bind_queue: axb::BindQueue::default(),
            flush,
        };
        shared.writer = Mutex::new(shared.load_pools()?);
        shared.apps = ArcSwap::from_pointee(apps::load(&shared)?);
        shared.serving_tones = ArcSwap::from_pointee(tones::load_serving(&shared)?);
        let shared = Arc::new(shared);
        recover::start(&shared).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        Ok(Store {
            bindings: Bindings { shared: shared.clone() },
            apps: Apps { shared: shared.clone() },
            tones: Tones { shared: shared.clone() },
            nonces: Nonces { book: shared.nonces.clone() },
            calls: Calls { shared: shared.clone() },
            data: Data { shared: shared.clone() },
            rulesets: Rulesets { shared: shared.clone() },
            shared,
        })
    }

    /// Bindings of every mode: provisioning, the call path's lookups, expiry.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// Apps and their X-number pools.
    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// The tone registry.
    pub fn tones(&self) -> &Tones {
        &self.tones
    }

    /// Customer data: the apps' items that their rule sets read.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Customer rule sets: versions, the active one per app, the audit log.
    pub fn rulesets(&self) -> &Rulesets {
        &self.rulesets
    }

    /// Replay protection for signed requests.
    pub fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// Sessions, the outbox and recordings: what the call path writes.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Waits until every change committed before this call, through any handle, is on disk.
    pub async fn durable(&self) -> Result<(), Error> {
        self.shared.durable().await
    }

    /// What group commit has done: waits, flushes and their time.
    pub fn flush_stats(&self) -> FlushStats {
        self.shared.flush.stats()
    }

    /// The call log's size, live data and compactions.
    pub fn call_log_stats(&self) -> CallLogStats {
        self.shared.log.stats()
    }

    /// Applies every queued change and writes pending nonces, then flushes synchronously (for
    /// shutdown). Blocks the thread. A faulted part is not flushed: its error is returned.
    pub fn flush_now(&self) -> Result<(), Error> {
        let shared = &self.shared;
        shared.combiner.commit(WriteSet::default())?;
        shared.health.check(StorePart::CallLog)?;
        shared.log.sync().map_err(|source| Error::Io { path: PathBuf::from(calllog::FILE_NAME), source })?;
        shared.health.check(StorePart::Sled)?;
        self.nonces.persist()?;
        shared.sled.get()?.flush().map_err(Error::Flush)
    }

    /// The oldest fault of a part of the store that cannot make changes durable now, if any
    /// (`/healthz` answers 503 while there is one; the store recovers by itself).
    pub fn fault(&self) -> Option<StoreFault> {
        self.shared.health.first_fault()
    }

    /// Faults, recoveries and refusals, for `/metrics`.
    pub fn health_stats(&self) -> HealthStats {
        self.shared.health.stats()
    }

    /// For tests: makes every write, sync and recovery probe of `part` fail as a full disk
    /// would (ENOSPC) while `failing`, exactly where the disk's errors surface, so the store
    /// faults and recovers through its real paths (sled is really opened again).
    #[doc(hidden)]
    pub fn inject_write_failures(&self, part: StorePart, failing: bool) {
        self.shared.health.inject(part, failing);
    }
}

impl Shared {
    /// An app, from memory.
    pub(crate) fn app(&self, app_key: &str) -> Option<Arc<crate::domain::App>> {
        self.apps.load().get(app_key).cloned()
    }

    /// An X number's record.
    pub(crate) fn number(&self, x_number: &str) -> Result<Option<crate::domain::XNumber>, Error> {
        self.get_record(Tree::Numbers, x_number.as_bytes())
    }

    /// Rebuilds the in-memory pools from the `app_area` index and the pair counters.
    fn load_pools(&self) -> Result<pools::Pools, Error> {
        let mut pools = pools::Pools::default();
        for key in self.keys_with_prefix(Tree::AppArea, &[])? {
            let text = String::from_utf8_lossy(&key);
            let mut parts = text.split('\0');
            if let (Some(app_key), Some(area), Some(x_number)) = (parts.next(), parts.next(), parts.next()) {
                pools.file(app_key, area, x_number);
                pools.set_pairs(x_number, self.pairs_on(x_number)?);
            }
        }
        Ok(pools)
    }

    /// A handle on one of sled's trees, for one operation (do not keep it: `handles.rs`).
    pub(crate) fn tree(&self, tree: Tree) -> Result<sled::Tree, Error> {
        Ok(self.sled.get()?.tree(tree).clone())
    }

    /// Reads one value.
    pub(crate) fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<sled::IVec>, Error> {
        if tree.in_call_log() {
            let value = self
                .log
                .get(tree, key)
                .map_err(|source| Error::Io { path: PathBuf::from(calllog::FILE_NAME), source })?;
            return Ok(value.map(sled::IVec::from));
        }
        self.sled.get()?.tree(tree).get(key).map_err(|source| Error::Sled { tree: tree.name(), source })
    }

    /// Decodes up to `max` records of a call-log tree whose keys start with `prefix`, in order.
    pub(crate) fn logged_records<R: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &[u8],
        max: usize,
    ) -> Result<Vec<R>, Error> {
        debug_assert!(tree.in_call_log(), "{} is kept in sled", tree.name());
        let records = self
            .log
            .scan(tree, prefix, max)
            .map_err(|source| Error::Io { path: PathBuf::from(calllog::FILE_NAME), source })?;
        records.iter().map(|(key, value)| record::decode(tree.name(), key, value)).collect()
    }

    /// Reads and decodes one record.
    pub(crate) fn get_record<R: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<R>, Error> {
        match self.get(tree, key)? {
            Some(bytes) => record::decode(tree.name(), key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Decodes every record of a sled tree whose key starts with `prefix`, in order.
    pub(crate) fn records_with_prefix<R: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &[u8],
    ) -> Result<Vec<R>, Error> {
        decode_all(tree, self.tree(tree)?.scan_prefix(prefix))
    }

    /// The keys under `prefix`, in order.
    pub(crate) fn keys_with_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<sled::IVec>, Error> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Sled { tree: tree.name(), source })
    }

    /// Serializes writers and gives them the pools. Held only in synchronous code, never across
    /// an `.await`; handlers call writers through `spawn_blocking` so that waiting for it never
    /// stalls an async worker.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, pools::Pools> {
        // The pools change only after a successful commit, in steps that cannot panic halfway, so
        // a poisoned lock still guards a consistent view: recover from poisoning.
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `writes` atomically in a sled transaction of their own, now, on this thread, and
    /// returns once they are applied (visible to every read; on disk after [`Store::durable`]).
    /// For the writer-lock holders (bindings, pools, apps, tones), which are serialized anyway
    /// and must not wait behind the call path's queue. Never for the call path's trees. Refused
    /// at once while either part of the store is faulted.
    pub(crate) fn apply_now(&self, writes: WriteSet) -> Result<(), Error> {
        debug_assert!(
            writes.ops.iter().all(|(tree, _, _)| !tree.is_call_path()),
            "call-path trees go through the committer"
        );
        if writes.ops.is_empty() {
            return Ok(());
        }
        // Their answers wait for the whole store (`Store::durable`): refused while either part
        // is faulted, before anything is applied.
        self.health.check(StorePart::Sled)?;
        self.health.check(StorePart::CallLog)?;
        write_sled(&*self.sled.get()?, &self.health, &writes.ops).map_err(|err| self.failed(&writes.ops, err))
    }

    /// Commits a change to the call path's trees (sessions, outbox, dead letters, recordings)
    /// through the committer thread, which combines concurrent changes into one batch
    /// ([`combine`]), and blocks this thread until it is applied.
    pub(crate) fn commit_blocking(&self, writes: WriteSet) -> Result<(), Error> {
        debug_assert!(writes.ops.iter().any(|(tree, _, _)| tree.is_call_path()), "only call-path changes are combined");
        if writes.ops.is_empty() {
            return Ok(());
        }
        self.refuse_if_faulted(&writes.ops)?;
        let parts = parts_written(&writes.ops);
        self.combiner.commit(writes).map_err(|err| match err {
            Error::Transaction(reason) => self.failed_parts(parts, reason),
            err => err,
        })
    }

    /// Like [`Shared::commit_blocking`], for async callers: queued, taken at once, and awaited
    /// without blocking the thread.
    pub(crate) async fn commit_async(&self, writes: WriteSet) -> Result<(), Error> {
        self.refuse_if_faulted(&writes.ops)?;
        let parts = parts_written(&writes.ops);
        let (sender, applied) = tokio::sync::oneshot::channel();
        let done = Box::new(move |result| {
            let _ = sender.send(result);
        });
        self.queue(writes, done, true);
        // The committer runs every queued change's callback, also when it stops.
        match applied.await {
            Ok(result) => result.map_err(|reason| self.failed_parts(parts, reason)),
            Err(_) => Err(Error::Transaction("the committer stopped before applying this change".into())),
        }
    }

    /// Queues `writes` (call-path trees) behind every change queued or combined before, and
    /// returns at once, without waiting; `done` hears the result on the committer thread. For
    /// changes whose caller need not wait, such as a connected call's new session.
    pub(crate) fn enqueue(&self, writes: WriteSet, done: combine::Done) {
        if let Err(err) = self.refuse_if_faulted(&writes.ops) {
            done(Err(err.to_string()));
            return;
        }
        self.queue(writes, done, false);
    }

    /// Refuses at once a change to a part that is faulted.
    fn refuse_if_faulted(&self, ops: &[Op]) -> Result<(), Error> {
        let (in_sled, logged) = parts_written(ops);
        if in_sled {
            self.health.check(StorePart::Sled)?;
        }
        if logged {
            self.health.check(StorePart::CallLog)?;
        }
        Ok(())
    }

    /// The error for a change that failed: the fault of a part it wrote, if one is faulted now
    /// (the failure faulted it, or it was refused), else the failure itself.
    fn failed(&self, ops: &[Op], reason: String) -> Error {
        self.failed_parts(parts_written(ops), reason)
    }

    fn failed_parts(&self, (in_sled, logged): (bool, bool), reason: String) -> Error {
        let fault = (in_sled.then(|| self.health.fault_of(StorePart::Sled)).flatten())
            .or_else(|| logged.then(|| self.health.fault_of(StorePart::CallLog)).flatten());
        match fault {
            Some(fault) => Error::Unavailable(fault),
            None => Error::Transaction(reason),
        }
    }

    /// Queues call-path `writes` for the committer; `awaited` when the caller waits for `done`.
    fn queue(&self, writes: WriteSet, done: combine::Done, awaited: bool) {
        debug_assert!(writes.ops.iter().any(|(tree, _, _)| tree.is_call_path()), "only call-path changes are queued");
        self.combiner.queue(writes, done, awaited);
    }

    /// Waits until every change committed before this call is on disk.
    async fn durable(&self) -> Result<(), Error> {
        self.flush.wait(Scope::All).await
    }

    /// Waits until every change to the call log committed before this call is on disk.
    async fn log_durable(&self) -> Result<(), Error> {
        self.flush.wait(Scope::Calls).await
    }

    /// A new id, unique in this store across restarts.
    pub(crate) fn next_id(&self) -> Result<u64, Error> {
        self.sled.get()?.db.generate_id().map_err(|source| Error::Sled { tree: "(ids)", source })
    }
}

/// Decodes every record an iterator over `tree` yields, in order.
pub(crate) fn decode_all<R: serde::de::DeserializeOwned>(
    tree: Tree,
    items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<R>, Error> {
    items
        .map(|item| {
            let (key, value) = item.map_err(|source| Error::Sled { tree: tree.name(), source })?;
            record::decode(tree.name(), &key, &value)
        })
        .collect()
}

/// Moves the sessions and pushes a store from before the call log kept in sled into the log, then
/// removes them from sled, and makes that removal durable (sled's flush, then `fdatasync` of its
/// file, as the group flush does) before the store serves anything. Safe to repeat after a crash
/// part-way: until the removal is on disk nothing newer than sled's copy was written to the log,
/// so moving them again writes the same values.
fn move_call_records_to_log(handles: &SledHandles, calls: &calllog::CallLog, dir: &Path) -> Result<(), Error> {
    let logged_trees = || Tree::ALL.into_iter().filter(|tree| tree.in_call_log());
    let mut moved = 0;
    for tree in logged_trees() {
        let sled_tree = handles.tree(tree);
        let sled_error = |source| Error::Sled { tree: tree.name(), source };
        let mut ops: Vec<Op> = Vec::new();
        for item in sled_tree.iter() {
            let (key, value) = item.map_err(sled_error)?;
            ops.push((tree, key.to_vec(), Some(value.to_vec())));
        }
        // In records of bounded size, each applied whole.
        for chunk in ops.chunks(4096) {
            calls.append(&chunk.iter().collect::<Vec<_>>()).map_err(Error::Transaction)?;
        }
        moved += ops.len();
    }
    if moved == 0 {
        return Ok(());
    }
    calls.sync().map_err(|source| Error::Io { path: dir.join(calllog::FILE_NAME), source })?;
    for tree in logged_trees() {
        handles.tree(tree).clear().map_err(|source| Error::Sled { tree: tree.name(), source })?;
    }
    handles.flush().map_err(Error::Flush)?;
    tracing::info!(records = moved, "moved sessions and pushes from sled into the call log");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Store, Tree};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_waits_for_a_store_that_is_closing() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let closing = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        let started = std::time::Instant::now();
        let second = Store::open(dir.path());
        assert!(second.is_ok(), "{:?}", second.err());
        assert!(started.elapsed() >= std::time::Duration::from_millis(150), "it waited for the first to close");
        closing.join().unwrap();
    }

    #[test]
    fn a_store_another_holder_keeps_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).err().map(|err| err.to_string()).unwrap_or_default();
        assert!(second.starts_with("another privnum holds the data directory"), "{second}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn call_records_an_older_store_kept_in_sled_move_into_the_call_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let sessions = db.open_tree(Tree::Sessions.name()).unwrap();
            sessions.insert("call-1", super::record::encode(&serde_json::json!({"session": 1}))).unwrap();
            db.open_tree(Tree::Recordings.name()).unwrap().insert("rec.wav", "app-1").unwrap();
            db.flush().unwrap();
        }
        {
            let store = Store::open(dir.path()).unwrap();
            let sessions: Vec<serde_json::Value> = store.calls().sessions().unwrap();
            assert_eq!(sessions, [serde_json::json!({"session": 1})], "the session moved to the log");
            assert!(store.shared.tree(Tree::Sessions).unwrap().is_empty(), "sled no longer holds it");
            assert!(store.calls().is_recording_of("app-1", "rec.wav").unwrap(), "recordings stay in sled");
            assert!(!store.calls().is_recording_of("app-2", "rec.wav").unwrap(), "and are the app's own");
            // The call goes on in the log: a second opening must not bring sled's copy back.
            // (That the removal from sled is on disk before serving, against a power cut, is
            // the fdatasync's job; no test here can cut the power.)
            store.calls().forget_session("call-1", &[]).unwrap();
            store.flush_now().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(store.calls().sessions::<serde_json::Value>().unwrap().is_empty(), "the ended call stays ended");
        assert!(store.calls().is_recording_of("app-1", "rec.wav").unwrap());
    }
}
