//! Apps and their X-number pools.
//!
//! An X belongs to at most one app. The `app_area` index lists each app's pool by area code, which
//! is what allocation scans; it is written in the same transaction as the number itself.
//!
//! Apps are read on every call and every provisioning request, and change rarely: they are served
//! from an in-memory copy (`Shared::apps`), read from sled at opening and replaced after each app
//! write with a copy holding the app just committed, under the writer lock, so it never differs
//! from sled for longer than the write itself.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::number::normalize_area_code;
use crate::domain::{App, Mode, Rejection, XNumber};

use super::keys;
use super::record::encode;
use super::{Error, OpError, Shared, Tree, WriteSet};

/// Every app by key, as stored.
pub(super) type AppMap = HashMap<String, Arc<App>>;

/// The store's handle on apps and their X-number pools. Writes take the writer lock (they
/// change the pools allocation reads) and block the thread: call them off the async workers.
#[derive(Debug, Clone)]
pub struct Apps {
    pub(super) shared: Arc<Shared>,
}

/// Reads every app from sled (at opening).
pub(super) fn load(shared: &Shared) -> Result<AppMap, Error> {
    Ok(all(shared)?.into_iter().map(|app| (app.app_key.clone(), Arc::new(app))).collect())
}

fn all(shared: &Shared) -> Result<Vec<App>, Error> {
    super::decode_all(Tree::Apps, shared.tree(Tree::Apps)?.iter())
}

impl Apps {
    /// An app, from memory (no decoding).
    pub fn get(&self, app_key: &str) -> Result<Option<Arc<App>>, Error> {
        Ok(self.shared.apps.load().get(app_key).cloned())
    }

    /// Every app, ordered by key, read from sled.
    pub fn all(&self) -> Result<Vec<App>, Error> {
        all(&self.shared)
    }

    /// Puts a committed app change in memory: `app` replaces the app of `app_key`, `None`
    /// removes it. Called under the writer lock, right after the commit; it cannot fail, so memory
    /// never lags behind a change that was committed.
    fn remember_app(&self, app_key: &str, app: Option<&App>) {
        let mut apps = AppMap::clone(&self.shared.apps.load());
        match app {
            Some(app) => apps.insert(app_key.to_owned(), Arc::new(app.clone())),
            None => apps.remove(app_key),
        };
        self.shared.apps.store(Arc::new(apps));
    }

    /// Creates or replaces an app and adds or updates the given numbers of its pool. Numbers it
    /// already has and that are not listed stay as they are.
    pub fn upsert(&self, app: &App, numbers: &[XNumber]) -> Result<(), OpError> {
        let mut pools = self.shared.lock_writer();
        let mut writes = WriteSet::default();
        if let Some(existing) = self.get(&app.app_key)? {
            if existing.mode != app.mode {
                let bound = self.bound_numbers(&app.app_key)?;
                if bound > 0 {
                    return Err(Rejection::InUse {
                        what: format!(
                            "app {} cannot change mode from {} to {} while {bound} of its numbers hold bindings",
                            app.app_key, existing.mode, app.mode
                        ),
                    }
                    .into());
                }
            }
            // Extensions keep the length they were bound with: a new length would strand them.
            if app.mode == Mode::Axe && existing.extension_digits != app.extension_digits {
                let bound = self.bound_numbers(&app.app_key)?;
                if bound > 0 {
                    return Err(Rejection::InUse {
                        what: format!(
                            "app {} cannot change extension_digits from {} to {} while {bound} of its numbers hold bindings",
                            app.app_key, existing.extension_digits, app.extension_digits
                        ),
                    }
                    .into());
                }
            }
        }
        writes.put(Tree::Apps, app.app_key.as_bytes(), encode(app));
        for number in numbers {
            self.stage_number(number, &mut writes)?;
        }
        self.shared.apply_now(writes)?;
        self.remember_app(&app.app_key, Some(app));
        for number in numbers {
            pools.file(&number.app_key, normalize_area_code(&number.area_code), &number.number);
        }
        Ok(())
    }

    /// Removes an app whose pool is empty, with its tones, and turns its rule set off (its
    /// versions and audit log stay, so a new app of the same key starts with none active).
    pub fn delete(&self, app_key: &str, now: i64) -> Result<(), OpError> {
        let _writer = self.shared.lock_writer();
        if self.get(app_key)?.is_none() {
            return Err(Rejection::NotFound { what: format!("app {app_key}") }.into());
        }
        let pool = self.shared.keys_with_prefix(Tree::AppArea, &keys::prefix(&[app_key]))?;
        if !pool.is_empty() {
            return Err(Rejection::InUse {
                what: format!("app {app_key} still has {} numbers; remove them first", pool.len()),
            }
            .into());
        }
        let mut writes = WriteSet::default();
        writes.remove(Tree::Apps, app_key.as_bytes());
        super::tones::stage_removal(&self.shared, app_key, &mut writes)?;
        super::rulesets::stage_turn_off(&self.shared, app_key, now, "ops: the app was deleted", &mut writes)?;
        self.shared.apply_now(writes)?;
        self.remember_app(app_key, None);
        super::tones::forget_serving(&self.shared, app_key);
        Ok(())
    }

    /// An X number's record: its app, area code and status.
    pub fn number(&self, x_number: &str) -> Result<Option<XNumber>, Error> {
        self.shared.number(x_number)
    }

    /// The app's pool, ordered by area code, then number.
    pub fn numbers_of(&self, app_key: &str) -> Result<Vec<XNumber>, Error> {
        let mut numbers = Vec::new();
        for key in self.shared.keys_with_prefix(Tree::AppArea, &keys::prefix(&[app_key]))? {
            if let Some(number) = self.number(&keys::last_part(&key))? {
                numbers.push(number);
            }
        }
        Ok(numbers)
    }

    /// Adds a number to its app's pool, or updates its area code, SMS capability or status.
    pub fn upsert_number(&self, number: &XNumber) -> Result<(), OpError> {
        let mut pools = self.shared.lock_writer();
        if self.get(&number.app_key)?.is_none() {
            return Err(Rejection::NotFound { what: format!("app {}", number.app_key) }.into());
        }
        let mut writes = WriteSet::default();
        self.stage_number(number, &mut writes)?;
        self.shared.apply_now(writes)?;
        pools.file(&number.app_key, normalize_area_code(&number.area_code), &number.number);
        Ok(())
    }

    /// Removes a number that holds no bindings from its app's pool.
    pub fn delete_number(&self, app_key: &str, x_number: &str) -> Result<(), OpError> {
        let mut pools = self.shared.lock_writer();
        let existing = self.number(x_number)?.filter(|n| n.app_key == app_key);
        let Some(existing) = existing else {
            return Err(Rejection::NotFound { what: format!("number {x_number} of app {app_key}") }.into());
        };
        let pairs = self.shared.pairs_on(x_number)?;
        if pairs > 0 {
            return Err(Rejection::InUse {
                what: format!("{x_number} still holds {pairs} bindings; unbind them first"),
            }
            .into());
        }
        let mut writes = WriteSet::default();
        writes.remove(Tree::Numbers, x_number.as_bytes());
        writes.remove(Tree::AppArea, area_key(&existing));
        self.shared.apply_now(writes)?;
        pools.unfile(x_number);
        Ok(())
    }

    /// Stages a number's record and pool entry, refusing a number of another app.
    fn stage_number(&self, number: &XNumber, writes: &mut WriteSet) -> Result<(), OpError> {
        if let Some(existing) = self.number(&number.number)? {
            if existing.app_key != number.app_key {
                return Err(Rejection::InUse {
                    what: format!("{} already belongs to app {}", number.number, existing.app_key),
                }
                .into());
            }
            writes.remove(Tree::AppArea, area_key(&existing));
        }
        writes.put(Tree::Numbers, number.number.as_bytes(), encode(number));
        writes.put(Tree::AppArea, area_key(number), Vec::new());
        Ok(())
    }

    /// How many of the app's numbers hold at least one binding.
    fn bound_numbers(&self, app_key: &str) -> Result<usize, Error> {
        let mut bound = 0;
        for key in self.shared.keys_with_prefix(Tree::AppArea, &keys::prefix(&[app_key]))? {
            if self.shared.pairs_on(&keys::last_part(&key))? > 0 {
                bound += 1;
            }
        }
        Ok(bound)
    }
}

pub(super) fn area_key(number: &XNumber) -> Vec<u8> {
    keys::join(&[&number.app_key, normalize_area_code(&number.area_code), &number.number])
}

#[cfg(test)]
mod tests {
    use crate::config::AppConfig;
    use crate::domain::Mode;
    use crate::store::{OpError, Store};

    #[test]
    fn the_apps_in_memory_follow_every_committed_change_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (mut app, _) = AppConfig::new("app", "secret", Mode::Axb).into_parts();
        store.apps().upsert(&app, &[]).unwrap();
        assert_eq!(store.apps().get("app").unwrap().as_deref(), Some(&app), "a new app is served at once");

        app.app_secret = "rotated".into();
        store.apps().upsert(&app, &[]).unwrap();
        assert_eq!(store.apps().get("app").unwrap().map(|a| a.app_secret.clone()).as_deref(), Some("rotated"));

        store.apps().delete("app", 0).unwrap();
        assert_eq!(store.apps().get("app").unwrap(), None, "a deleted app is gone from memory");
        assert!(matches!(store.apps().delete("app", 0), Err(OpError::Rejected(_))));

        store.apps().upsert(&app, &[]).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.apps().get("app").unwrap().as_deref(), Some(&app), "memory and sled agree after reopening");
    }
}
