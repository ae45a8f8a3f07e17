//! AX bindings: bind, modify, unbind, query, the temporary callee, and the lookup routing uses.
//!
//! Invariants kept here (and only here):
//! - `ax_x[X]` exists iff a stored AX binding is on X: one X holds one A (`policy-docs/ax.md`);
//! - `ax_a[app, A, X]` exists iff that binding exists, and an app's A has at most
//!   [`MAX_X_PER_A`] of them when a bind is accepted;
//! - X's binding count (`axb_pairs`, shared by every mode) is 1 while X is bound, so allocation
//!   and the admin API see AX numbers as taken.
//!
//! AX bindings do not expire; a temporary callee carries its own expiry and is read on the
//! injected clock by the call path. A memory-callback record (the last party who called A through
//! X) is written by the call path with the session, and removed with the binding.

use crate::domain::ax::{AxBindRequest, AxModifyRequest, AxQuery, AxTarget, TemporaryCalleeRequest, MAX_X_PER_A};
use crate::domain::axe::Callback;
use crate::domain::{App, AxBinding, Rejection, XSelection};

use super::allocation::{self, new_subscription_id, RoomOnX};
use super::pools::Pools;
use super::record::encode;
use super::{keys, Bindings, Error, OpError, Shared, Tree, WriteSet};
use crate::domain::binding::Recorded as _;

fn a_key(app_key: &str, orig_num: &str, x_number: &str) -> Vec<u8> {
    keys::join(&[app_key, orig_num, x_number])
}

/// One AX bind looking for a free X, for the shared allocation loop: an X has room while it has
/// no A.
struct AxRoom<'a> {
    store: &'a Bindings,
    pools: &'a Pools,
    app: &'a App,
}

impl RoomOnX for AxRoom<'_> {
    type Room = ();

    fn pools(&self) -> &Pools {
        self.pools
    }

    fn room_on(&mut self, x_number: &str) -> Result<(), OpError> {
        self.store.ax_check_x_free(self.app, x_number)
    }
}

impl Bindings {
    fn ax_stored(&self, subscription_id: &str) -> Result<Option<AxBinding>, Error> {
        self.shared.get_record(Tree::Ax, subscription_id.as_bytes())
    }

    /// The AX binding on X, whichever app it belongs to: the lookup of the call path.
    pub fn ax_for_call(&self, x_number: &str) -> Result<Option<AxBinding>, Error> {
        match self.shared.get(Tree::AxX, x_number.as_bytes())? {
            Some(id) => self.ax_stored(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The app's X numbers bound to `orig_num`.
    /// A's memory-callback record on X (AX shares the callback tree with AXE: key X, A), as
    /// stored; [`AxBinding::remembered`] says whether it still counts.
    pub fn ax_memory(&self, binding: &AxBinding) -> Result<Option<Callback>, Error> {
        self.shared.get_record(Tree::AxeCallback, &keys::join(&[&binding.x_number, &binding.orig_num]))
    }

    fn ax_of_a(&self, app_key: &str, orig_num: &str) -> Result<Vec<AxBinding>, Error> {
        let mut bindings = Vec::new();
        for key in self.shared.keys_with_prefix(Tree::AxA, &keys::prefix(&[app_key, orig_num]))? {
            if let Some(id) = self.shared.get(Tree::AxA, &key)? {
                bindings.extend(self.ax_stored(&String::from_utf8_lossy(&id))?);
            }
        }
        Ok(bindings)
    }

    /// Binds A to an X given by number or chosen from the app's pool by area code.
    pub fn ax_bind(&self, app: &App, request: &AxBindRequest, now: i64) -> Result<AxBinding, OpError> {
        let mut binding = request.to_binding(new_subscription_id(), &app.app_key, "", now);
        binding.check_against(app)?;
        let mut pools = self.shared.lock_writer();
        let held = self.ax_of_a(&app.app_key, &request.orig_num)?.len();
        if held >= MAX_X_PER_A {
            return Err(Rejection::XPerALimit { orig_num: request.orig_num.clone(), max: MAX_X_PER_A }.into());
        }
        binding.x_number = match &request.x {
            XSelection::Number(x_number) => {
                self.ax_check_x_free(app, x_number)?;
                x_number.clone()
            }
            XSelection::Area { area_code, lenient } => {
                let mut room = AxRoom { store: self, pools: &pools, app };
                // One binding fills an X.
                match allocation::allocate(&mut room, &app.app_key, area_code, *lenient, 1)? {
                    Some((x_number, ())) => x_number,
                    None => {
                        let where_ = allocation::where_looked(area_code, *lenient);
                        return Err(Rejection::NoFreeAxNumber { where_ }.into());
                    }
                }
            }
        };
        let mut writes = WriteSet::default();
        stage_insert(&mut writes, &binding);
        Shared::stage_bindings_on(&mut writes, &binding.x_number, 1);
        self.shared.apply_now(writes)?;
        pools.set_pairs(&binding.x_number, 1);
        Ok(binding)
    }

    /// X is in the app's pool, may take a binding, and has no A yet.
    fn ax_check_x_free(&self, app: &App, x_number: &str) -> Result<(), OpError> {
        self.check_x_of_app(app, x_number)?;
        if self.shared.get(Tree::AxX, x_number.as_bytes())?.is_some() {
            return Err(Rejection::XAlreadyAllocated { x_number: x_number.to_owned() }.into());
        }
        Ok(())
    }

    /// The app's binding a modify or unbind names, or `NotFound`.
    fn ax_target(&self, app: &App, target: &AxTarget) -> Result<AxBinding, OpError> {
        let found = match target {
            AxTarget::Subscription(id) => self.ax_stored(id)?,
            AxTarget::X { x_number, orig_num } => self
                .ax_for_call(x_number)?
                .filter(|binding| orig_num.as_ref().is_none_or(|orig_num| *orig_num == binding.orig_num)),
        };
        found
            .filter(|binding| binding.app_key == app.app_key)
            .ok_or_else(|| Rejection::NotFound { what: target.describe() }.into())
    }

    pub fn ax_modify(&self, app: &App, request: &AxModifyRequest) -> Result<AxBinding, OpError> {
        let _writer = self.shared.lock_writer();
        let mut binding = self.ax_target(app, &request.target)?;
        binding.apply(&request.changes);
        if request.changes.record.is_some() {
            binding.check_against(app)?;
        }
        let mut writes = WriteSet::default();
        writes.put(Tree::Ax, binding.subscription_id.as_bytes(), encode(&binding));
        self.shared.apply_now(writes)?;
        Ok(binding)
    }

    pub fn ax_unbind(&self, app: &App, target: &AxTarget) -> Result<AxBinding, OpError> {
        let mut pools = self.shared.lock_writer();
        let binding = self.ax_target(app, target)?;
        let mut writes = WriteSet::default();
        writes.remove(Tree::Ax, binding.subscription_id.as_bytes());
        writes.remove(Tree::AxX, binding.x_number.as_bytes());
        writes.remove(Tree::AxA, a_key(&binding.app_key, &binding.orig_num, &binding.x_number));
        writes.remove(Tree::AxeCallback, keys::join(&[&binding.x_number, &binding.orig_num]));
        Shared::stage_bindings_on(&mut writes, &binding.x_number, 0);
        self.shared.apply_now(writes)?;
        pools.set_pairs(&binding.x_number, 0);
        Ok(binding)
    }

    /// The app's bindings a query names; none at all is `NotFound` (1012007).
    pub fn ax_query(&self, app: &App, query: &AxQuery) -> Result<Vec<AxBinding>, OpError> {
        let found = match query {
            AxQuery::Subscription(id) => self.ax_stored(id)?.into_iter().collect(),
            AxQuery::OrigNum(orig_num) => self.ax_of_a(&app.app_key, orig_num)?,
            AxQuery::PrivateNum(x_number) => self.ax_for_call(x_number)?.into_iter().collect(),
        };
        let found: Vec<AxBinding> = found.into_iter().filter(|binding| binding.app_key == app.app_key).collect();
        if found.is_empty() {
            return Err(Rejection::NotFound { what: "no AX binding matches the query".to_owned() }.into());
        }
        Ok(found)
    }

    /// Sets (or replaces) the binding's temporary callee. `origNum` must be the A of `privateNum`.
    pub fn ax_set_temporary_callee(
        &self,
        app: &App,
        request: &TemporaryCalleeRequest,
        now: i64,
    ) -> Result<AxBinding, OpError> {
        let _writer = self.shared.lock_writer();
        let target = AxTarget::X { x_number: request.x_number.clone(), orig_num: Some(request.orig_num.clone()) };
        let mut binding = self.ax_target(app, &target).map_err(|err| match err {
            OpError::Rejected(Rejection::NotFound { .. }) => OpError::Rejected(Rejection::NotFound {
                what: format!("origNum {} is not bound to privateNum {}", request.orig_num, request.x_number),
            }),
            other => other,
        })?;
        binding.temporary_callee = Some(request.to_callee(now));
        let mut writes = WriteSet::default();
        writes.put(Tree::Ax, binding.subscription_id.as_bytes(), encode(&binding));
        self.shared.apply_now(writes)?;
        Ok(binding)
    }
}

fn stage_insert(writes: &mut WriteSet, binding: &AxBinding) {
    let id = binding.subscription_id.as_bytes();
    writes.put(Tree::Ax, id, encode(binding));
    writes.put(Tree::AxX, binding.x_number.as_bytes(), id);
    writes.put(Tree::AxA, a_key(&binding.app_key, &binding.orig_num, &binding.x_number), id);
}
