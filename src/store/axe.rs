//! AXE bindings: bind, modify, unbind, the two queries, expiry, callback records, and the
//! lookups routing uses.
//!
//! Invariants kept here (and only here):
//! - `axe_ext[X, E]` exists iff a stored binding on X has extension E: one binding per E;
//! - `axe_user[X, A]` exists iff a stored binding on X has A: one extension per A on an X, so
//!   A's own call through X finds exactly one binding;
//! - `axe_order` holds one key per stored binding, in creation order (the v2.0 cursor);
//! - X's binding count (`axb_pairs`, shared by every mode) equals its stored bindings;
//! - an expired binding is never returned; the sweeper removes it, a bind that meets it purges it;
//! - a callback record is removed with its binding, and is only believed while its
//!   subscription id is the current binding's (see [`Callback::is_valid_for`]).

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use crate::domain::axe::{
    self, AxeBindRequest, AxeCursorQuery, AxeModifyRequest, AxeQuery, AxeTarget, Callback, Cursor,
};
use crate::domain::{App, AxeBinding, Rejection, XSelection};

use super::allocation::{self, new_subscription_id, RoomOnX, SWEEP_BEFORE_BIND};
use super::pools::Pools;
use super::record::encode;
use super::{keys, Bindings, Error, OpError, Shared, Tree, WriteSet};
use crate::domain::binding::Recorded as _;

/// One page of a v1.0 query, with the number of matches on all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxePage {
    pub total: usize,
    pub bindings: Vec<AxeBinding>,
}

/// One page of a v2.0 query; `next` is where the following page starts, `None` at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxeCursorPage {
    pub bindings: Vec<AxeBinding>,
    pub next: Option<Cursor>,
}

/// A callback number that is X itself would have A's call loop back into X.
fn check_callback_not_x(callback_num: &Option<String>, x_number: &str) -> Result<(), Rejection> {
    if callback_num.as_deref() == Some(x_number) {
        return Err(Rejection::invalid("callbackNum", "must differ from virtualNum"));
    }
    Ok(())
}

fn order_key(binding: &AxeBinding) -> Vec<u8> {
    keys::order(&binding.app_key, binding.seq)
}

/// One AXE bind looking for room, for the shared allocation loop: an X has room for A when A has
/// no extension there yet and the requested (or some) extension is free.
struct AxeRoom<'a> {
    store: &'a Bindings,
    pools: &'a mut Pools,
    app: &'a App,
    request: &'a AxeBindRequest,
    now: i64,
}

impl RoomOnX for AxeRoom<'_> {
    /// The extension A gets.
    type Room = String;

    fn pools(&self) -> &Pools {
        self.pools
    }

    fn room_on(&mut self, x_number: &str) -> Result<String, OpError> {
        self.store.axe_room_on(self.pools, self.app, x_number, self.request, self.now)
    }
}

/// Binding changes staged for one commit, keeping each X's count right.
struct AxeWrites<'s> {
    store: &'s Bindings,
    pools: &'s mut Pools,
    writes: WriteSet,
    counts: HashMap<String, u32>,
}

impl<'s> AxeWrites<'s> {
    fn new(store: &'s Bindings, pools: &'s mut Pools) -> Self {
        AxeWrites { store, pools, writes: WriteSet::default(), counts: HashMap::new() }
    }

    fn count(&mut self, x_number: &str) -> Result<&mut u32, Error> {
        if !self.counts.contains_key(x_number) {
            let current = self.store.shared.bindings_on(self.pools, x_number)?;
            self.counts.insert(x_number.to_owned(), current);
        }
        Ok(self.counts.entry(x_number.to_owned()).or_default())
    }

    fn insert(&mut self, binding: &AxeBinding) -> Result<(), Error> {
        let (x, id) = (binding.x_number.as_str(), binding.subscription_id.as_bytes());
        self.writes.put(Tree::Axe, id, encode(binding));
        self.writes.put(Tree::AxeExt, keys::join(&[x, &binding.extend_num]), id);
        self.writes.put(Tree::AxeUser, keys::join(&[x, &binding.bind_num]), id);
        self.writes.put(Tree::AxeOrder, order_key(binding), id);
        if let Some(expires_at) = binding.expires_at {
            self.writes.put(Tree::AxeExpiry, keys::expiry(expires_at, &binding.subscription_id), Vec::new());
        }
        *self.count(x)? += 1;
        Ok(())
    }

    /// Removes a binding and its indexes; its callback record too when `with_callback`.
    fn delete(&mut self, binding: &AxeBinding, with_callback: bool) -> Result<(), Error> {
        let x = binding.x_number.as_str();
        self.writes.remove(Tree::Axe, binding.subscription_id.as_bytes());
        self.writes.remove(Tree::AxeExt, keys::join(&[x, &binding.extend_num]));
        self.writes.remove(Tree::AxeUser, keys::join(&[x, &binding.bind_num]));
        self.writes.remove(Tree::AxeOrder, order_key(binding));
        if let Some(expires_at) = binding.expires_at {
            self.writes.remove(Tree::AxeExpiry, keys::expiry(expires_at, &binding.subscription_id));
        }
        if with_callback {
            self.writes.remove(Tree::AxeCallback, keys::join(&[x, &binding.bind_num]));
        }
        let count = self.count(x)?;
        *count = count.saturating_sub(1);
        Ok(())
    }

    fn commit(mut self) -> Result<(), Error> {
        for (x_number, count) in &self.counts {
            Shared::stage_bindings_on(&mut self.writes, x_number, *count);
        }
        self.store.shared.apply_now(self.writes)?;
        for (x_number, count) in self.counts {
            self.pools.set_pairs(&x_number, count);
        }
        Ok(())
    }
}

impl Bindings {
    fn axe_stored(&self, subscription_id: &str) -> Result<Option<AxeBinding>, Error> {
        self.shared.get_record(Tree::Axe, subscription_id.as_bytes())
    }

    fn axe_by_index(&self, tree: Tree, x_number: &str, part: &str) -> Result<Option<AxeBinding>, Error> {
        match self.shared.get(tree, &keys::join(&[x_number, part]))? {
            Some(id) => self.axe_stored(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The active binding of extension `extend_num` on X (a third party keyed it).
    pub fn axe_for_extension(&self, x_number: &str, extend_num: &str, now: i64) -> Result<Option<AxeBinding>, Error> {
        Ok(self
            .axe_by_index(Tree::AxeExt, x_number, extend_num)?
            .filter(|b| b.is_active(now) && b.extend_num == extend_num))
    }

    /// The active binding that has `number` as A on X (A calls X).
    pub fn axe_for_a(&self, x_number: &str, number: &str, now: i64) -> Result<Option<AxeBinding>, Error> {
        Ok(self.axe_by_index(Tree::AxeUser, x_number, number)?.filter(|b| b.is_active(now) && b.bind_num == number))
    }

    /// A's callback record under `binding`, while it is valid.
    pub fn axe_callback(&self, binding: &AxeBinding, now: i64) -> Result<Option<Callback>, Error> {
        let key = keys::join(&[&binding.x_number, &binding.bind_num]);
        let callback: Option<Callback> = self.shared.get_record(Tree::AxeCallback, &key)?;
        Ok(callback.filter(|callback| callback.is_valid_for(binding, now)))
    }

    /// Creates a binding: X by number or from the pool by area code, E requested or the lowest free.
    pub fn axe_bind(&self, app: &App, request: &AxeBindRequest, now: i64) -> Result<AxeBinding, OpError> {
        let id = new_subscription_id();
        // Validate the settings before any allocation work.
        let mut binding = request.to_binding(id, &app.app_key, "", "", 0, now).map_err(Rejection::Invalid)?;
        binding.check_against(app)?;
        let mut pools = self.shared.lock_writer();
        // Under the lock, so that the cursor order is the commit order; from 1, since the cursor
        // `…_0` means "before every binding".
        binding.seq = self.shared.next_id()?.saturating_add(1);
        self.axe_sweep_due(&mut pools, now, SWEEP_BEFORE_BIND)?;
        let digits = app.extension_digits;
        let (x_number, extend_num) = match &request.x {
            XSelection::Number(x_number) => {
                let extend_num = self.axe_room_on(&mut pools, app, x_number, request, now)?;
                (x_number.clone(), extend_num)
            }
            XSelection::Area { area_code, lenient } => {
                let mut room = AxeRoom { store: self, pools: &mut pools, app, request, now };
                // An X is full when every extension is taken.
                let found = allocation::allocate(&mut room, &app.app_key, area_code, *lenient, axe::capacity(digits))?;
                found.ok_or_else(|| {
                    let where_ = if *lenient { "for area code" } else { "in area code" };
                    Rejection::NoIdleExtension { what: format!("no X with a free extension {where_} {area_code}") }
                })?
            }
        };
        check_callback_not_x(&binding.callback_num, &x_number)?;
        binding.x_number = x_number;
        binding.extend_num = extend_num;
        let mut writes = AxeWrites::new(self, &mut pools);
        writes.insert(&binding)?;
        writes.commit()?;
        Ok(binding)
    }

    /// Whether X can take A with the requested (or any) extension; returns the extension.
    fn axe_room_on(
        &self,
        pools: &mut Pools,
        app: &App,
        x_number: &str,
        request: &AxeBindRequest,
        now: i64,
    ) -> Result<String, OpError> {
        self.check_x_of_app(app, x_number)?;
        self.axe_clear_way(pools, Tree::AxeUser, x_number, &request.bind_num, now, || Rejection::AlreadyBound {
            number: request.bind_num.clone(),
            x_number: x_number.to_owned(),
        })?;
        if let Some(extend_num) = &request.extend_num {
            self.axe_clear_way(pools, Tree::AxeExt, x_number, extend_num, now, || Rejection::NoIdleExtension {
                what: format!("extendNum {extend_num} is taken on {x_number}"),
            })?;
            return Ok(extend_num.clone());
        }
        let used: BTreeSet<String> = self
            .shared
            .keys_with_prefix(Tree::AxeExt, &keys::prefix(&[x_number]))?
            .iter()
            .map(|key| keys::last_part(key))
            .collect();
        let digits = app.extension_digits;
        (1..=axe::capacity(digits))
            .map(|index| axe::extension(index, digits))
            .find(|candidate| !used.contains(candidate))
            .ok_or_else(|| {
                Rejection::NoIdleExtension { what: format!("every extension on {x_number} is taken") }.into()
            })
    }

    /// Refuses when an active binding holds `part` (A or E) on X; purges an expired one.
    fn axe_clear_way(
        &self,
        pools: &mut Pools,
        tree: Tree,
        x_number: &str,
        part: &str,
        now: i64,
        taken: impl FnOnce() -> Rejection,
    ) -> Result<(), OpError> {
        let Some(existing) = self.axe_by_index(tree, x_number, part)? else { return Ok(()) };
        if existing.is_active(now) {
            return Err(taken().into());
        }
        let mut writes = AxeWrites::new(self, pools);
        writes.delete(&existing, true)?;
        writes.commit()?;
        Ok(())
    }

    /// The app's active binding a modify or unbind names, or `NotFound`.
    fn axe_target(&self, app: &App, target: &AxeTarget, now: i64) -> Result<AxeBinding, OpError> {
        let found = match target {
            AxeTarget::Subscription(id) => self.axe_stored(id)?,
            AxeTarget::Extension { x_number, extend_num } => self.axe_by_index(Tree::AxeExt, x_number, extend_num)?,
        };
        found
            .filter(|binding| binding.app_key == app.app_key && binding.is_active(now))
            .ok_or_else(|| Rejection::NotFound { what: target.describe() }.into())
    }

    pub fn axe_modify(&self, app: &App, request: &AxeModifyRequest, now: i64) -> Result<AxeBinding, OpError> {
        let mut pools = self.shared.lock_writer();
        let old = self.axe_target(app, &request.target, now)?;
        let mut new = old.clone();
        new.apply(&request.changes, now).map_err(Rejection::Invalid)?;
        if request.changes.record.is_some() {
            new.check_against(app)?;
        }
        check_callback_not_x(&new.callback_num, &new.x_number)?;
        if new.bind_num == new.x_number {
            return Err(Rejection::invalid("bindNum", "must differ from virtualNum").into());
        }
        let new_a = new.bind_num != old.bind_num;
        if new_a {
            let (x_number, number) = (new.x_number.clone(), new.bind_num.clone());
            self.axe_clear_way(&mut pools, Tree::AxeUser, &x_number, &number, now, || Rejection::AlreadyBound {
                number: number.clone(),
                x_number: x_number.clone(),
            })?;
        }
        let mut writes = AxeWrites::new(self, &mut pools);
        // A new A starts without a callback record; the same A keeps its own.
        writes.delete(&old, new_a)?;
        writes.insert(&new)?;
        writes.commit()?;
        Ok(new)
    }

    pub fn axe_unbind(&self, app: &App, target: &AxeTarget, now: i64) -> Result<AxeBinding, OpError> {
        let mut pools = self.shared.lock_writer();
        let binding = self.axe_target(app, target, now)?;
        let mut writes = AxeWrites::new(self, &mut pools);
        writes.delete(&binding, true)?;
        writes.commit()?;
        Ok(binding)
    }

    /// A v1.0 query; no match at all is `NotFound` (1012007).
    pub fn axe_query(&self, app: &App, query: &AxeQuery, now: i64) -> Result<AxePage, OpError> {
        let (matches, page) = match query {
            AxeQuery::Subscription(id) => (self.axe_stored(id)?.into_iter().collect::<Vec<_>>(), None),
            AxeQuery::OnX { x_number, extend_num: Some(extend_num), page } => {
                (self.axe_by_index(Tree::AxeExt, x_number, extend_num)?.into_iter().collect(), Some(*page))
            }
            AxeQuery::OnX { x_number, extend_num: None, page } => {
                let mut all = Vec::new();
                for key in self.shared.keys_with_prefix(Tree::AxeExt, &keys::prefix(&[x_number]))? {
                    if let Some(id) = self.shared.get(Tree::AxeExt, &key)? {
                        all.extend(self.axe_stored(&String::from_utf8_lossy(&id))?);
                    }
                }
                (all, Some(*page))
            }
        };
        let matches: Vec<AxeBinding> =
            matches.into_iter().filter(|b| b.app_key == app.app_key && b.is_active(now)).collect();
        if matches.is_empty() {
            return Err(Rejection::NotFound { what: "no AXE binding matches the query".to_owned() }.into());
        }
        let total = matches.len();
        let bindings = match page {
            Some(page) => page.of(matches),
            None => matches,
        };
        Ok(AxePage { total, bindings })
    }

    /// A v2.0 query: the app's active bindings created after the cursor, oldest first.
    pub fn axe_query_cursor(&self, app: &App, query: &AxeCursorQuery, now: i64) -> Result<AxeCursorPage, Error> {
        let prefix = keys::prefix(&[&app.app_key]);
        let start = keys::order(&app.app_key, query.cursor.seq);
        let mut bindings = Vec::new();
        let mut more = false;
        for item in self.shared.tree(Tree::AxeOrder)?.range::<Vec<u8>, _>((Bound::Excluded(start), Bound::Unbounded)) {
            let (key, id) = item.map_err(|source| Error::Sled { tree: Tree::AxeOrder.name(), source })?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(binding) = self.axe_stored(&String::from_utf8_lossy(&id))? else { continue };
            let wanted = query.x_number.as_ref().is_none_or(|x| *x == binding.x_number);
            if !wanted || !binding.is_active(now) {
                continue;
            }
            if bindings.len() == query.limit {
                more = true;
                break;
            }
            bindings.push(binding);
        }
        let next = if more { bindings.last().map(Cursor::of) } else { None };
        Ok(AxeCursorPage { bindings, next })
    }

    /// Removes up to `limit` bindings that expired at or before `now`; returns how many.
    pub fn axe_sweep_expired(&self, now: i64, limit: usize) -> Result<usize, Error> {
        let mut pools = self.shared.lock_writer();
        self.axe_sweep_due(&mut pools, now, limit)
    }

    fn axe_sweep_due(&self, pools: &mut Pools, now: i64, limit: usize) -> Result<usize, Error> {
        let due = self
            .shared
            .tree(Tree::AxeExpiry)?
            .range(..keys::expiry_bound(now).to_vec())
            .keys()
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Sled { tree: Tree::AxeExpiry.name(), source })?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut writes = AxeWrites::new(self, pools);
        let mut swept = 0;
        for key in &due {
            match self.axe_stored(&keys::expiry_subscription(key))? {
                Some(binding) if !binding.is_active(now) => {
                    writes.delete(&binding, true)?;
                    swept += 1;
                }
                None => writes.writes.remove(Tree::AxeExpiry, key.to_vec()),
                Some(_) => {}
            }
        }
        writes.commit()?;
        Ok(swept)
    }
}
