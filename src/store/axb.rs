//! AXB bindings: bind, modify, unbind, query, expiry, and the lookup routing uses.
//!
//! Invariants kept here (and only here):
//! - `axb_user[X, n]` exists iff a stored binding on X has n as A or B, so a user number appears at
//!   most once per X (reference §3.7);
//! - `axb_pairs[X]` equals the number of stored bindings on X and never exceeds the configured
//!   capacity when a bind is accepted;
//! - an expired binding is never returned; it is purged by the sweeper, or earlier when it stands
//!   in the way of a new binding.

use std::collections::HashMap;

use crate::domain::axb::{AxbQuery, AxbUnbind, BindRequest, ModifyRequest, XSelection};
use crate::domain::number::normalize_area_code;
use crate::domain::{App, AxbBinding, Rejection};

use super::keys;
use super::pools::{Cursor, Pools};
use super::record::encode;
use super::{Error, OpError, Store, WriteSet, T};
use crate::domain::binding::Recorded as _;

/// How many due expiries a bind sweeps before it looks for room, so expired pairs free capacity
/// at once while one request never does unbounded work.
const SWEEP_BEFORE_BIND: usize = 64;

/// One page of a query, with the number of matches on all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxbPage {
    pub total: usize,
    pub bindings: Vec<AxbBinding>,
}

/// Binding changes staged for one commit, keeping each X's pair count right across several
/// inserts and deletes.
struct AxbWrites<'s> {
    store: &'s Store,
    pools: &'s mut Pools,
    writes: WriteSet,
    pairs: HashMap<String, u32>,
}

impl<'s> AxbWrites<'s> {
    fn new(store: &'s Store, pools: &'s mut Pools) -> Self {
        AxbWrites { store, pools, writes: WriteSet::default(), pairs: HashMap::new() }
    }

    fn pairs(&mut self, x_number: &str) -> Result<&mut u32, Error> {
        if !self.pairs.contains_key(x_number) {
            let current = match self.pools.pairs(x_number) {
                Some(pairs) => pairs,
                None => self.store.axb_pairs_on(x_number)?,
            };
            self.pairs.insert(x_number.to_owned(), current);
        }
        Ok(self.pairs.get_mut(x_number).unwrap_or_else(|| unreachable!("inserted above")))
    }

    fn insert(&mut self, binding: &AxbBinding) -> Result<(), Error> {
        let (x, id) = (binding.x_number.as_str(), binding.subscription_id.as_str());
        self.writes.put(T::Axb, id.as_bytes(), encode(binding));
        for party in binding.parties() {
            self.writes.put(T::AxbUser, keys::join(&[x, party]), id.as_bytes());
        }
        self.writes.put(T::AxbX, keys::join(&[x, id]), Vec::new());
        if let Some(expires_at) = binding.expires_at {
            self.writes.put(T::AxbExpiry, keys::expiry(expires_at, id), Vec::new());
        }
        *self.pairs(x)? += 1;
        Ok(())
    }

    fn delete(&mut self, binding: &AxbBinding) -> Result<(), Error> {
        let (x, id) = (binding.x_number.as_str(), binding.subscription_id.as_str());
        self.writes.remove(T::Axb, id.as_bytes());
        for party in binding.parties() {
            self.writes.remove(T::AxbUser, keys::join(&[x, party]));
        }
        self.writes.remove(T::AxbX, keys::join(&[x, id]));
        if let Some(expires_at) = binding.expires_at {
            self.writes.remove(T::AxbExpiry, keys::expiry(expires_at, id));
        }
        let pairs = self.pairs(x)?;
        *pairs = pairs.saturating_sub(1);
        Ok(())
    }

    /// Commits to sled, then (only on success) updates the in-memory pools.
    fn commit(mut self) -> Result<(), Error> {
        for (x_number, pairs) in &self.pairs {
            if *pairs == 0 {
                self.writes.remove(T::AxbPairs, x_number.as_bytes());
            } else {
                self.writes.put(T::AxbPairs, x_number.as_bytes(), keys::count(*pairs));
            }
        }
        self.store.commit(self.writes)?;
        for (x_number, pairs) in self.pairs {
            self.pools.set_pairs(&x_number, pairs);
        }
        Ok(())
    }
}

impl Store {
    /// How many bindings X holds (expired ones not yet purged included).
    pub fn axb_pairs_on(&self, x_number: &str) -> Result<u32, Error> {
        Ok(keys::read_count(self.get(T::AxbPairs, x_number.as_bytes())?.as_deref()))
    }

    fn axb_stored(&self, subscription_id: &str) -> Result<Option<AxbBinding>, Error> {
        self.get_record(T::Axb, subscription_id.as_bytes())
    }

    /// The stored binding on X that has `number` as A or B, expired or not.
    fn axb_by_party(&self, x_number: &str, number: &str) -> Result<Option<AxbBinding>, Error> {
        match self.get(T::AxbUser, &keys::join(&[x_number, number]))? {
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

    /// Creates a binding, choosing X from the pool when the request gives an area code.
    pub fn axb_bind(&self, app: &App, request: &BindRequest, now: i64, max_pairs: u32) -> Result<AxbBinding, OpError> {
        let mut binding = request.to_binding(new_subscription_id(), &app.app_key, "", now);
        binding.check_against(app)?;
        let parties = [request.caller_num.as_str(), request.callee_num.as_str()];
        let mut pools = self.lock_writer();
        if self.axb_expiry_due(now)? {
            self.sweep_due(&mut pools, now, SWEEP_BEFORE_BIND)?;
        }
        binding.x_number = match &request.x {
            XSelection::Number(x_number) => {
                self.check_x_accepts(&mut pools, app, x_number, &parties, now, max_pairs)?;
                x_number.clone()
            }
            XSelection::Area { area_code, lenient } => {
                self.allocate_x(&mut pools, app, area_code, *lenient, &parties, now, max_pairs)?
            }
        };
        let mut writes = AxbWrites::new(self, &mut pools);
        writes.insert(&binding)?;
        writes.commit()?;
        Ok(binding)
    }

    /// Whether `x_number` can take a new pair of `parties` now. Purges an expired binding that
    /// holds one of the parties. (Expired pairs elsewhere on X were swept before allocation.)
    fn check_x_accepts(
        &self,
        pools: &mut Pools,
        app: &App,
        x_number: &str,
        parties: &[&str],
        now: i64,
        max_pairs: u32,
    ) -> Result<(), OpError> {
        let number = self.number(x_number)?.filter(|number| number.app_key == app.app_key);
        let Some(number) = number else {
            return Err(Rejection::NumberNotInPool { x_number: x_number.to_owned() }.into());
        };
        if !number.status.allows_new_bindings() {
            return Err(Rejection::NumberStatus { x_number: x_number.to_owned(), status: number.status }.into());
        }
        if pools.pairs(x_number).unwrap_or_default() >= max_pairs {
            return Err(Rejection::PairLimit { x_number: x_number.to_owned(), max: max_pairs }.into());
        }
        self.check_parties_free(pools, x_number, parties, None, now)
    }

    /// Refuses a party already on X (in a binding other than `except`); purges an expired one.
    fn check_parties_free(
        &self,
        pools: &mut Pools,
        x_number: &str,
        parties: &[&str],
        except: Option<&str>,
        now: i64,
    ) -> Result<(), OpError> {
        for party in parties {
            let Some(existing) = self.axb_by_party(x_number, party)? else { continue };
            if Some(existing.subscription_id.as_str()) == except {
                continue;
            }
            if existing.is_active(now) {
                return Err(
                    Rejection::AlreadyBound { number: (*party).to_owned(), x_number: x_number.to_owned() }.into()
                );
            }
            let mut writes = AxbWrites::new(self, pools);
            writes.delete(&existing)?;
            writes.commit()?;
        }
        Ok(())
    }

    /// Picks the X for an area-code bind. Strict: only numbers of that area code. Lenient: the same
    /// area first, then areas sharing the most leading digits (a stand-in for "same province"),
    /// then any. Within an area, the X holding the fewest pairs wins, then the lowest number.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    fn allocate_x(
        &self,
        pools: &mut Pools,
        app: &App,
        area_code: &str,
        lenient: bool,
        parties: &[&str],
        now: i64,
        max_pairs: u32,
    ) -> Result<String, OpError> {
        let wanted = normalize_area_code(area_code);
        for area in pools.areas_to_try(&app.app_key, wanted, lenient) {
            let mut cursor: Option<Cursor> = None;
            while let Some(next) = pools.next_in_area(&app.app_key, &area, cursor.as_ref()) {
                // Numbers are ordered by pair count, so the first full one means all the rest are.
                if next.0 >= max_pairs {
                    break;
                }
                match self.check_x_accepts(pools, app, &next.1, parties, now, max_pairs) {
                    Ok(()) => return Ok(next.1),
                    Err(OpError::Rejected(_)) => cursor = Some(next),
                    Err(err) => return Err(err),
                }
            }
        }
        let where_ = if lenient {
            format!("for area code {area_code} or elsewhere")
        } else {
            format!("in area code {area_code}")
        };
        Err(Rejection::NoFreeNumber { where_ }.into())
    }

    /// Changes a binding. Absent fields keep their values; new numbers must be free on X.
    pub fn axb_modify(&self, app: &App, request: &ModifyRequest, now: i64) -> Result<AxbBinding, OpError> {
        let mut pools = self.lock_writer();
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
        self.check_parties_free(&mut pools, &new.x_number, &parties, Some(&new.subscription_id), now)?;
        let mut writes = AxbWrites::new(self, &mut pools);
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
        let mut pools = self.lock_writer();
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
        for key in self.keys_with_prefix(T::AxbX, &keys::prefix(&[x_number]))? {
            if let Some(binding) = self.axb_stored(&keys::last_part(&key))? {
                if binding.app_key == app_key {
                    bindings.push(binding);
                }
            }
        }
        Ok(bindings)
    }

    /// Answers a query; no match at all is `NotFound` (1012007), as on the reference platform.
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
            Some(page) => matches.into_iter().skip(page.skip()).take(page.size as usize).collect(),
            None => matches,
        };
        Ok(AxbPage { total, bindings })
    }

    /// Whether some binding's expiry has come (one range probe of the expiry queue).
    fn axb_expiry_due(&self, now: i64) -> Result<bool, Error> {
        let due = self.tree(T::AxbExpiry).range(..keys::expiry_bound(now).to_vec()).keys().next();
        due.transpose().map(|key| key.is_some()).map_err(|source| Error::Sled { tree: T::AxbExpiry.name(), source })
    }

    /// Removes up to `limit` bindings that expired at or before `now`; returns how many. The
    /// sweeper calls this periodically so capacity is freed even on numbers nobody binds on.
    pub fn axb_sweep_expired(&self, now: i64, limit: usize) -> Result<usize, Error> {
        let mut pools = self.lock_writer();
        self.sweep_due(&mut pools, now, limit)
    }

    fn sweep_due(&self, pools: &mut Pools, now: i64, limit: usize) -> Result<usize, Error> {
        let expiry = self.tree(T::AxbExpiry);
        let due = expiry
            .range(..keys::expiry_bound(now).to_vec())
            .keys()
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Sled { tree: T::AxbExpiry.name(), source })?;
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
                None => writes.writes.remove(T::AxbExpiry, key.to_vec()),
                Some(_) => {}
            }
        }
        writes.commit()?;
        Ok(swept)
    }
}

/// Subscription ids are opaque (String(1-64)): 32 random hex digits.
pub(super) fn new_subscription_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
