//! AXB bindings: bind, modify, unbind, query, expiry, and the lookup routing uses.
//!
//! Invariants kept here (and only here):
//! - `axb_user[X, n]` exists iff a stored binding on X has n as A or B, so a user number appears at
//!   most once per X (README, Provisioning API);
//! - `axb_pairs[X]` equals the number of stored bindings on X and never exceeds the configured
//!   capacity when a bind is accepted;
//! - an expired binding is never returned; it is purged by the sweeper, or earlier when it stands
//!   in the way of a new binding.
//!
//! Binds are combined: each joins a queue, and whoever next holds the writer lock binds everything
//! queued, one request after another against the store as the batch has changed it so far (an
//! overlay of the keys a bind reads), then commits them in one transaction and hands each its
//! result before releasing the lock. A refused bind is rolled back out of the batch; a failed
//! commit fails every bind in it. With one client this is one bind per transaction, as before;
//! with many, the lock is held once per batch instead of once per bind.

use std::collections::HashMap;

use crate::domain::axb::{AxbBindRequest, AxbModifyRequest, AxbQuery, AxbUnbind};
use crate::domain::{App, AxbBinding, Rejection, XSelection};

use super::allocation::{self, new_subscription_id, RoomOnX, SWEEP_BEFORE_BIND};
use super::keys;
use super::pools::Pools;
use super::record::encode;
use super::{Bindings, Error, OpError, Shared, Tree, WriteSet};
use crate::domain::binding::Recorded as _;

/// One page of a query, with the number of matches on all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxbPage {
    pub total: usize,
    pub bindings: Vec<AxbBinding>,
}

/// Binding changes staged for one commit, keeping each X's pair count right across several
/// inserts and deletes, and answering the lookups later changes in the same commit make.
struct AxbWrites<'s> {
    store: &'s Bindings,
    pools: &'s mut Pools,
    writes: WriteSet,
    pairs: HashMap<String, u32>,
    /// Staged `axb_user` keys: the subscription id, or `None` when removed.
    users: HashMap<Vec<u8>, Option<String>>,
    /// Staged binding records by subscription id (`None` when removed).
    records: HashMap<String, Option<AxbBinding>>,
}

/// A state of an [`AxbWrites`] to go back to, when one bind of a batch is refused.
struct Checkpoint {
    ops: usize,
    pairs: HashMap<String, u32>,
    users: HashMap<Vec<u8>, Option<String>>,
    records: HashMap<String, Option<AxbBinding>>,
}

impl<'s> AxbWrites<'s> {
    fn new(store: &'s Bindings, pools: &'s mut Pools) -> Self {
        AxbWrites {
            store,
            pools,
            writes: WriteSet::default(),
            pairs: HashMap::new(),
            users: HashMap::new(),
            records: HashMap::new(),
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            ops: self.writes.ops.len(),
            pairs: self.pairs.clone(),
            users: self.users.clone(),
            records: self.records.clone(),
        }
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        self.writes.ops.truncate(checkpoint.ops);
        self.pairs = checkpoint.pairs;
        self.users = checkpoint.users;
        self.records = checkpoint.records;
    }

    /// The binding on X that has `number` as A or B, expired or not, as this commit leaves it.
    fn by_party(&self, x_number: &str, number: &str) -> Result<Option<AxbBinding>, Error> {
        let key = keys::join(&[x_number, number]);
        let id = match self.users.get(&key) {
            Some(staged) => staged.clone(),
            None => self.store.shared.get(Tree::AxbUser, &key)?.map(|id| String::from_utf8_lossy(&id).into_owned()),
        };
        let Some(id) = id else { return Ok(None) };
        match self.records.get(&id) {
            Some(staged) => Ok(staged.clone()),
            None => self.store.axb_stored(&id),
        }
    }

    fn pairs(&mut self, x_number: &str) -> Result<&mut u32, Error> {
        if !self.pairs.contains_key(x_number) {
            let current = self.store.shared.bindings_on(self.pools, x_number)?;
            self.pairs.insert(x_number.to_owned(), current);
        }
        Ok(self.pairs.get_mut(x_number).unwrap_or_else(|| unreachable!("inserted above")))
    }

    fn insert(&mut self, binding: &AxbBinding) -> Result<(), Error> {
        let (x, id) = (binding.x_number.as_str(), binding.subscription_id.as_str());
        self.writes.put(Tree::Axb, id.as_bytes(), encode(binding));
        self.records.insert(id.to_owned(), Some(binding.clone()));
        for party in binding.parties() {
            self.writes.put(Tree::AxbUser, keys::join(&[x, party]), id.as_bytes());
            self.users.insert(keys::join(&[x, party]), Some(id.to_owned()));
        }
        self.writes.put(Tree::AxbX, keys::join(&[x, id]), Vec::new());
        if let Some(expires_at) = binding.expires_at {
            self.writes.put(Tree::AxbExpiry, keys::expiry(expires_at, id), Vec::new());
        }
        *self.pairs(x)? += 1;
        Ok(())
    }

    fn delete(&mut self, binding: &AxbBinding) -> Result<(), Error> {
        let (x, id) = (binding.x_number.as_str(), binding.subscription_id.as_str());
        self.writes.remove(Tree::Axb, id.as_bytes());
        self.records.insert(id.to_owned(), None);
        for party in binding.parties() {
            self.writes.remove(Tree::AxbUser, keys::join(&[x, party]));
            self.users.insert(keys::join(&[x, party]), None);
        }
        self.writes.remove(Tree::AxbX, keys::join(&[x, id]));
        if let Some(expires_at) = binding.expires_at {
            self.writes.remove(Tree::AxbExpiry, keys::expiry(expires_at, id));
        }
        let pairs = self.pairs(x)?;
        *pairs = pairs.saturating_sub(1);
        Ok(())
    }

    /// Commits to sled, then (only on success) updates the in-memory pools.
    fn commit(mut self) -> Result<(), Error> {
        for (x_number, pairs) in &self.pairs {
            Shared::stage_bindings_on(&mut self.writes, x_number, *pairs);
        }
        self.store.shared.apply_now(self.writes)?;
        for (x_number, pairs) in self.pairs {
            self.pools.set_pairs(&x_number, pairs);
        }
        Ok(())
    }
}

/// One AXB bind looking for room, for the shared allocation loop: the batch's overlay counts.
struct AxbRoom<'w, 's> {
    store: &'w Bindings,
    writes: &'w mut AxbWrites<'s>,
    app: &'w App,
    parties: [&'w str; 2],
    now: i64,
    max_pairs: u32,
}

impl RoomOnX for AxbRoom<'_, '_> {
    type Room = ();

    fn pools(&self) -> &Pools {
        self.writes.pools
    }

    fn staged(&mut self, x_number: &str, _committed: u32) -> Result<u32, Error> {
        self.writes.pairs(x_number).copied()
    }

    fn touched(&self, x_number: &str) -> bool {
        self.writes.pairs.contains_key(x_number)
    }

    fn room_on(&mut self, x_number: &str) -> Result<(), OpError> {
        let (app, parties) = (self.app, self.parties);
        self.store.check_x_accepts(self.writes, app, x_number, &parties, self.now, self.max_pairs)
    }
}

impl Bindings {
    fn axb_stored(&self, subscription_id: &str) -> Result<Option<AxbBinding>, Error> {
        self.shared.get_record(Tree::Axb, subscription_id.as_bytes())
    }

    /// The stored binding on X that has `number` as A or B, expired or not.
    fn axb_by_party(&self, x_number: &str, number: &str) -> Result<Option<AxbBinding>, Error> {
        match self.shared.get(Tree::AxbUser, &keys::join(&[x_number, number]))? {
            Some(id) => self.axb_stored(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The active binding through which `caller` reaches someone by dialling X: the lookup of the
    /// call path (one index read, one record read). The two reads are not one snapshot, so a
    /// modify in between could hand back a binding the caller has just left: it is checked again.
    pub fn axb_for_call(&self, x_number: &str, caller: &str, now: i64) -> Result<Option<AxbBinding>, Error> {
        Ok(self
            .axb_by_party(x_number, caller)?
            .filter(|binding| binding.is_active(now) && binding.parties().contains(&caller)))
    }

    /// Creates a binding, choosing X from the pool when the request gives an area code. Binds
    /// that arrive together are made together (see the module's notes).
    pub fn axb_bind(
        &self,
        app: &App,
        request: &AxbBindRequest,
        now: i64,
        max_pairs: u32,
    ) -> Result<AxbBinding, OpError> {
        let ticket = self.shared.bind_queue.join(app, request, now, max_pairs);
        let mut pools = self.shared.lock_writer();
        // Batches go oldest first; this bind may wait behind more than one.
        loop {
            if let Some(result) = self.shared.bind_queue.result(ticket) {
                return result;
            }
            let batch = self.shared.bind_queue.take_waiting();
            if batch.is_empty() {
                return Err(Error::Transaction("this bind was taken into a batch that did not finish".into()).into());
            }
            // Published before the lock is released: a waiting bind finds its result there.
            for (done, result) in self.bind_batch(&mut pools, batch) {
                self.shared.bind_queue.finish(done, result);
            }
        }
    }

    /// Binds each queued request in turn against the store as the batch leaves it, then commits
    /// the accepted ones in one transaction.
    fn bind_batch(&self, pools: &mut Pools, batch: Vec<QueuedBind>) -> Vec<(u64, Result<AxbBinding, OpError>)> {
        // Every request's `now` is at or before the clock now, so a binding expired at the latest
        // of them has expired for all: sweep up to it, as much as the binds would one by one.
        let latest = batch.iter().map(|bind| bind.now).max().unwrap_or_default();
        let swept = match self.axb_expiry_due(latest) {
            Ok(true) => self.sweep_due(pools, latest, SWEEP_BEFORE_BIND * batch.len()).map(|_| ()),
            Ok(false) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = swept {
            return batch.into_iter().map(|bind| (bind.ticket, Err(err.for_each().into()))).collect();
        }
        let mut writes = AxbWrites::new(self, pools);
        let mut outcomes = Vec::with_capacity(batch.len());
        for bind in batch {
            let checkpoint = writes.checkpoint();
            // A bind that panics is refused alone, like one that fails.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.bind_one(&mut writes, &bind.app, &bind.request, bind.now, bind.max_pairs)
            }))
            .unwrap_or_else(|_| Err(Error::Transaction("binding panicked; nothing was stored".into()).into()));
            if outcome.is_err() {
                writes.rollback(checkpoint);
            }
            outcomes.push((bind.ticket, outcome));
        }
        match writes.commit() {
            Ok(()) => outcomes,
            // Nothing was stored, so every bind fails alike: a refusal caused by another bind of
            // the batch would name a binding that does not exist.
            Err(err) => outcomes.into_iter().map(|(ticket, _)| (ticket, Err(err.for_each().into()))).collect(),
        }
    }

    /// One bind of a batch, staged in `writes`.
    fn bind_one(
        &self,
        writes: &mut AxbWrites<'_>,
        app: &App,
        request: &AxbBindRequest,
        now: i64,
        max_pairs: u32,
    ) -> Result<AxbBinding, OpError> {
        let mut binding = request.to_binding(new_subscription_id(), &app.app_key, "", now);
        binding.check_against(app)?;
        let parties = [request.caller_num.as_str(), request.callee_num.as_str()];
        binding.x_number = match &request.x {
            XSelection::Number(x_number) => {
                self.check_x_accepts(writes, app, x_number, &parties, now, max_pairs)?;
                x_number.clone()
            }
            XSelection::Area { area_code, lenient } => {
                let mut room = AxbRoom { store: self, writes, app, parties, now, max_pairs };
                match allocation::allocate(&mut room, &app.app_key, area_code, *lenient, max_pairs)? {
                    Some((x_number, ())) => x_number,
                    None => {
                        let where_ = allocation::where_looked(area_code, *lenient);
                        return Err(Rejection::NoFreeNumber { where_ }.into());
                    }
                }
            }
        };
        writes.insert(&binding)?;
        Ok(binding)
    }

    /// Whether `x_number` can take a new pair of `parties` now. Purges an expired binding that
    /// holds one of the parties. (Expired pairs elsewhere on X were swept before allocation.)
    fn check_x_accepts(
        &self,
        writes: &mut AxbWrites<'_>,
        app: &App,
        x_number: &str,
        parties: &[&str],
        now: i64,
        max_pairs: u32,
    ) -> Result<(), OpError> {
        self.check_x_of_app(app, x_number)?;
        if *writes.pairs(x_number)? >= max_pairs {
            return Err(Rejection::PairLimit { x_number: x_number.to_owned(), max: max_pairs }.into());
        }
        self.check_parties_free(writes, x_number, parties, None, now)
    }

    /// Refuses a party already on X (in a binding other than `except`); stages the purge of an
    /// expired one.
    fn check_parties_free(
        &self,
        writes: &mut AxbWrites<'_>,
        x_number: &str,
        parties: &[&str],
        except: Option<&str>,
        now: i64,
    ) -> Result<(), OpError> {
        for party in parties {
            let Some(existing) = writes.by_party(x_number, party)? else { continue };
            if Some(existing.subscription_id.as_str()) == except {
                continue;
            }
            if existing.is_active(now) {
                return Err(
                    Rejection::AlreadyBound { number: (*party).to_owned(), x_number: x_number.to_owned() }.into()
                );
            }
            writes.delete(&existing)?;
        }
        Ok(())
    }

    /// Changes a binding. Absent fields keep their values; new numbers must be free on X.
    pub fn axb_modify(&self, app: &App, request: &AxbModifyRequest, now: i64) -> Result<AxbBinding, OpError> {
        let mut pools = self.shared.lock_writer();
        let old = self.axb_active_of(&app.app_key, &request.subscription_id, now)?;
        let mut new = old.clone();
        new.apply(&request.changes, now);
        if new.caller_num == new.callee_num {
            return Err(Rejection::invalid("calleeNum", "must differ from callerNum").into());
        }
        if request.changes.record.is_some() {
            new.check_against(app)?;
        }
        let parties = new.parties();
        let mut writes = AxbWrites::new(self, &mut pools);
        self.check_parties_free(&mut writes, &new.x_number, &parties, Some(&new.subscription_id), now)?;
        writes.delete(&old)?;
        writes.insert(&new)?;
        writes.commit()?;
        Ok(new)
    }

    /// The app's active binding with this id, or `NotFound`.
    fn axb_active_of(&self, app_key: &str, subscription_id: &str, now: i64) -> Result<AxbBinding, OpError> {
        self.axb_stored(subscription_id)?
            .filter(|binding| binding.app_key == app_key && binding.is_active(now))
            .ok_or_else(|| Rejection::NotFound { what: format!("subscriptionId {subscription_id}") }.into())
    }

    /// Removes one binding, or every binding on an X. Returns what was removed.
    pub fn axb_unbind(&self, app: &App, target: &AxbUnbind, now: i64) -> Result<Vec<AxbBinding>, OpError> {
        let mut pools = self.shared.lock_writer();
        let removed = match target {
            AxbUnbind::Subscription(id) => vec![self.axb_active_of(&app.app_key, id, now)?],
            AxbUnbind::AllOnX(x_number) => {
                let all = self.axb_on_x(&app.app_key, x_number)?;
                if !all.iter().any(|binding| binding.is_active(now)) {
                    return Err(Rejection::NotFound { what: format!("no binding on relationNum {x_number}") }.into());
                }
                all
            }
        };
        let mut writes = AxbWrites::new(self, &mut pools);
        for binding in &removed {
            writes.delete(binding)?;
        }
        writes.commit()?;
        Ok(removed.into_iter().filter(|binding| binding.is_active(now)).collect())
    }

    /// Every stored binding on X that belongs to the app, expired ones included.
    fn axb_on_x(&self, app_key: &str, x_number: &str) -> Result<Vec<AxbBinding>, Error> {
        let mut bindings = Vec::new();
        for key in self.shared.keys_with_prefix(Tree::AxbX, &keys::prefix(&[x_number]))? {
            if let Some(binding) = self.axb_stored(&keys::last_part(&key))? {
                if binding.app_key == app_key {
                    bindings.push(binding);
                }
            }
        }
        Ok(bindings)
    }

    /// Answers a query; no match at all is `NotFound` (1012007), as on the Huawei platform.
    pub fn axb_query(&self, app: &App, query: &AxbQuery, now: i64) -> Result<AxbPage, OpError> {
        let (matches, page) = match query {
            AxbQuery::Subscription(id) => (vec![self.axb_active_of(&app.app_key, id, now)?], None),
            AxbQuery::OnX { x_number, caller_num, callee_num, page } => {
                let candidates = match caller_num.as_deref().or(callee_num.as_deref()) {
                    Some(number) => self.axb_by_party(x_number, number)?.into_iter().collect(),
                    None => self.axb_on_x(&app.app_key, x_number)?,
                };
                let matches: Vec<_> = candidates
                    .into_iter()
                    .filter(|binding| {
                        binding.app_key == app.app_key && binding.is_active(now) && query.matches(binding)
                    })
                    .collect();
                (matches, Some(*page))
            }
        };
        if matches.is_empty() {
            return Err(Rejection::NotFound { what: "no binding matches the query".to_owned() }.into());
        }
        let total = matches.len();
        let bindings = match page {
            Some(page) => page.of(matches),
            None => matches,
        };
        Ok(AxbPage { total, bindings })
    }

    /// Whether some binding's expiry has come (one range probe of the expiry queue).
    fn axb_expiry_due(&self, now: i64) -> Result<bool, Error> {
        let due = self.shared.tree(Tree::AxbExpiry)?.range(..keys::expiry_bound(now).to_vec()).keys().next();
        due.transpose().map(|key| key.is_some()).map_err(|source| Error::Sled { tree: Tree::AxbExpiry.name(), source })
    }

    /// Removes up to `limit` bindings that expired at or before `now`; returns how many. The
    /// sweeper calls this periodically so capacity is freed even on numbers nobody binds on.
    pub fn axb_sweep_expired(&self, now: i64, limit: usize) -> Result<usize, Error> {
        let mut pools = self.shared.lock_writer();
        self.sweep_due(&mut pools, now, limit)
    }

    fn sweep_due(&self, pools: &mut Pools, now: i64, limit: usize) -> Result<usize, Error> {
        let expiry = self.shared.tree(Tree::AxbExpiry)?;
        let due = expiry
            .range(..keys::expiry_bound(now).to_vec())
            .keys()
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Sled { tree: Tree::AxbExpiry.name(), source })?;
        let mut writes = AxbWrites::new(self, pools);
        let mut swept = 0;
        for key in &due {
            match self.axb_stored(&keys::expiry_subscription(key))? {
                Some(binding) if !binding.is_active(now) => {
                    writes.delete(&binding)?;
                    swept += 1;
                }
                // An expiry entry left without its binding (it cannot happen through this module,
                // but would block the queue forever): drop it.
                None => writes.writes.remove(Tree::AxbExpiry, key.to_vec()),
                Some(_) => {}
            }
        }
        writes.commit()?;
        Ok(swept)
    }
}

/// The most binds one lock hold makes: each bind's rollback point copies the batch's staged
/// state, so a batch costs the square of its length.
const MAX_BATCH: usize = 32;

/// A bind waiting for the writer lock.
struct QueuedBind {
    ticket: u64,
    app: App,
    request: AxbBindRequest,
    now: i64,
    max_pairs: u32,
}

/// Binds waiting to be made, and the results of binds made by another caller's batch.
#[derive(Default)]
pub(crate) struct BindQueue {
    state: std::sync::Mutex<BindQueueState>,
}

#[derive(Default)]
struct BindQueueState {
    next_ticket: u64,
    waiting: Vec<QueuedBind>,
    done: HashMap<u64, Result<AxbBinding, OpError>>,
}

impl std::fmt::Debug for BindQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindQueue").finish_non_exhaustive()
    }
}

impl BindQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, BindQueueState> {
        // Every step below leaves the state whole: recover from poisoning.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn join(&self, app: &App, request: &AxbBindRequest, now: i64, max_pairs: u32) -> u64 {
        let mut state = self.state();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push(QueuedBind { ticket, app: app.clone(), request: request.clone(), now, max_pairs });
        ticket
    }

    fn result(&self, ticket: u64) -> Option<Result<AxbBinding, OpError>> {
        self.state().done.remove(&ticket)
    }

    /// The oldest waiting binds, at most [`MAX_BATCH`]; the rest wait for the next lock holder.
    fn take_waiting(&self) -> Vec<QueuedBind> {
        let mut state = self.state();
        let count = state.waiting.len().min(MAX_BATCH);
        state.waiting.drain(..count).collect()
    }

    fn finish(&self, ticket: u64, result: Result<AxbBinding, OpError>) {
        self.state().done.insert(ticket, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppConfig, NumberConfig};
    use crate::domain::axb::AxbChanges;
    use crate::domain::{Mode, NumberStatus};
    use crate::store::Store;

    const X1: &str = "+8617000000001";
    const X2: &str = "+8617000000002";

    fn open(dir: &std::path::Path) -> (Store, App) {
        let store = Store::open(dir).unwrap();
        let mut config = AppConfig::new("app", "secret", Mode::Axb);
        config.numbers = [X1, X2]
            .iter()
            .map(|x| NumberConfig {
                number: (*x).into(),
                area_code: "0755".into(),
                sms: true,
                status: NumberStatus::Normal,
            })
            .collect();
        let (app, numbers) = config.into_parts();
        store.apps().upsert(&app, &numbers).unwrap();
        (store, app)
    }

    fn queued(ticket: u64, app: &App, x: XSelection, a: &str, b: &str, duration: Option<i64>) -> QueuedBind {
        let settings = AxbChanges { duration_secs: duration, ..AxbChanges::default() };
        let request = AxbBindRequest { x, caller_num: a.into(), callee_num: b.into(), settings };
        QueuedBind { ticket, app: app.clone(), request, now: 1_000, max_pairs: 2 }
    }

    fn code(outcome: &Result<AxbBinding, OpError>) -> &'static str {
        match outcome {
            Ok(_) => "0",
            Err(OpError::Rejected(rejection)) => rejection.result_code(),
            Err(OpError::Store(_)) => "store",
        }
    }

    #[tokio::test]
    async fn a_batch_sees_its_own_binds_and_rolls_back_only_the_refused_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = open(dir.path());
        let on = |x: &str| XSelection::Number(x.into());
        let area = XSelection::Area { area_code: "0755".into(), lenient: false };
        let batch = vec![
            queued(1, &app, on(X1), "+8613800000001", "+8613900000001", None),
            // A is on X1 already, by the bind just before it in the same batch.
            queued(2, &app, on(X1), "+8613800000001", "+8613900000002", None),
            queued(3, &app, on(X1), "+8613800000003", "+8613900000003", None),
            // X1 is full (2 pairs) within the batch.
            queued(4, &app, on(X1), "+8613800000004", "+8613900000004", None),
            // By area: X1 is full, so X2, although the pools still show X1 as emptier.
            queued(5, &app, area, "+8613800000005", "+8613900000005", None),
        ];
        let mut pools = store.shared.lock_writer();
        let outcomes = store.bindings().bind_batch(&mut pools, batch);
        drop(pools);
        let codes: Vec<_> = outcomes.iter().map(|(ticket, outcome)| (*ticket, code(outcome))).collect();
        assert_eq!(codes, [(1, "0"), (2, "1012010"), (3, "0"), (4, "1012009"), (5, "0")]);
        let x_of =
            |ticket: u64| outcomes.iter().find(|(t, _)| *t == ticket).unwrap().1.as_ref().unwrap().x_number.clone();
        assert_eq!(x_of(5), X2);
        assert_eq!((store.bindings().pairs_on(X1).unwrap(), store.bindings().pairs_on(X2).unwrap()), (2, 1));
        assert!(
            store.bindings().axb_for_call(X1, "+8613900000002", 1_000).unwrap().is_none(),
            "the refused bind left nothing"
        );
        assert!(store.bindings().axb_for_call(X1, "+8613900000003", 1_000).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_batch_purges_an_expired_binding_in_its_way_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = open(dir.path());
        let on = |x: &str| XSelection::Number(x.into());
        let mut pools = store.shared.lock_writer();
        let first = store
            .bindings()
            .bind_batch(&mut pools, vec![queued(1, &app, on(X1), "+8613800000001", "+8613900000001", Some(10))]);
        assert_eq!(code(&first[0].1), "0");
        // At 1_000 + 10 the binding has expired; two binds in one batch reuse its A and its B.
        let mut later = vec![
            queued(2, &app, on(X1), "+8613800000001", "+8613900000009", None),
            queued(3, &app, on(X1), "+8613800000008", "+8613900000001", None),
        ];
        for bind in &mut later {
            bind.now = 1_010;
        }
        let outcomes = store.bindings().bind_batch(&mut pools, later);
        drop(pools);
        assert_eq!(outcomes.iter().map(|(_, outcome)| code(outcome)).collect::<Vec<_>>(), ["0", "0"]);
        assert_eq!(store.bindings().pairs_on(X1).unwrap(), 2, "the expired pair was removed once, not twice");
    }

    #[tokio::test]
    async fn a_batch_sweeps_up_to_its_latest_request_and_spreads_area_binds() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = open(dir.path());
        let on = |x: &str| XSelection::Number(x.into());
        let mut pools = store.shared.lock_writer();
        // X1 full with two pairs that expire at 1_010.
        let full = vec![
            queued(1, &app, on(X1), "+8613800000001", "+8613900000001", Some(10)),
            queued(2, &app, on(X1), "+8613800000002", "+8613900000002", Some(10)),
        ];
        assert!(store.bindings().bind_batch(&mut pools, full).iter().all(|(_, outcome)| outcome.is_ok()));
        // One request still at 1_005, one at 1_020 on X1: the later one finds X1 swept.
        let mut mixed = vec![
            queued(3, &app, on(X2), "+8613800000003", "+8613900000003", None),
            queued(4, &app, on(X1), "+8613800000004", "+8613900000004", None),
        ];
        mixed[0].now = 1_005;
        mixed[1].now = 1_020;
        let outcomes = store.bindings().bind_batch(&mut pools, mixed);
        assert_eq!(outcomes.iter().map(|(_, outcome)| code(outcome)).collect::<Vec<_>>(), ["0", "0"]);
        assert_eq!((store.bindings().pairs_on(X1).unwrap(), store.bindings().pairs_on(X2).unwrap()), (1, 1));

        // Now X1 and X2 hold one pair each: two area binds in one batch take one each, not both
        // the number that was emptiest before the batch.
        let area = || XSelection::Area { area_code: "0755".into(), lenient: false };
        let mut spread = vec![
            queued(5, &app, area(), "+8613800000005", "+8613900000005", None),
            queued(6, &app, area(), "+8613800000006", "+8613900000006", None),
        ];
        for bind in &mut spread {
            bind.now = 1_020;
            // Room for more than one more on each: only the batch's own counts tell them apart.
            bind.max_pairs = 5;
        }
        let outcomes = store.bindings().bind_batch(&mut pools, spread);
        drop(pools);
        let xs: Vec<String> = outcomes.iter().map(|(_, outcome)| outcome.as_ref().unwrap().x_number.clone()).collect();
        assert_ne!(xs[0], xs[1], "{xs:?}");
        assert_eq!((store.bindings().pairs_on(X1).unwrap(), store.bindings().pairs_on(X2).unwrap()), (2, 2));
    }

    #[tokio::test]
    async fn a_bind_behind_more_than_one_batch_is_made_and_so_are_those_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = open(dir.path());
        let area = || XSelection::Area { area_code: "0755".into(), lenient: false };
        let request = |n: u32| AxbBindRequest {
            x: area(),
            caller_num: format!("+86138{n:08}"),
            callee_num: format!("+86139{n:08}"),
            settings: AxbChanges::default(),
        };
        // More binds queued than one lock hold takes, then one more that takes the lock itself.
        let queued: Vec<u64> =
            (0..MAX_BATCH as u32 + 8).map(|n| store.shared.bind_queue.join(&app, &request(n), 1_000, 5000)).collect();
        let last = store.bindings().axb_bind(&app, &request(999), 1_000, 5000);
        assert!(last.is_ok(), "{last:?}");
        for ticket in queued {
            assert!(store.shared.bind_queue.result(ticket).is_some_and(|result| result.is_ok()), "ticket {ticket}");
        }
        let total = store.bindings().pairs_on(X1).unwrap() + store.bindings().pairs_on(X2).unwrap();
        assert_eq!(total, MAX_BATCH as u32 + 9);
    }
}
