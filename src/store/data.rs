//! Customer data (`Store::data`): each app's items, a key and a string value with an optional
//! expiry, written by the app's server and read by its rule sets.
//!
//! Trees (`keys.rs`): `app_data` (app key, item key → the item), `app_data_expiry` (expiry, app
//! key, item key → empty: the sweep queue) and `app_data_count` (app key → how many items it
//! holds, u32 big-endian).
//!
//! Invariants: an item with an expiry has exactly one entry in the sweep queue, at its expiry;
//! `app_data_count[app]` equals the app's items in `app_data`, expired ones included until the
//! sweeper removes them (they are never returned). Writers hold the writer lock and apply one
//! sled transaction each, so a batch is stored whole or not at all.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{keys, record, Error, OpError, Shared, Tree, WriteSet};
use crate::domain::data::DataItem;
use crate::domain::Rejection;

/// The store's handle on customer data.
#[derive(Clone)]
pub struct Data {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data").finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredItem {
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

fn item_key(app_key: &str, key: &str) -> Vec<u8> {
    keys::join(&[app_key, key])
}

fn expiry_key(at: i64, app_key: &str, key: &str) -> Vec<u8> {
    let mut joined = keys::expiry(at, app_key);
    joined.push(0);
    joined.extend_from_slice(key.as_bytes());
    joined
}

impl Data {
    fn stored(&self, app_key: &str, key: &str) -> Result<Option<StoredItem>, Error> {
        let item_key = item_key(app_key, key);
        self.shared.get_record(Tree::AppData, &item_key)
    }

    fn count_of(&self, app_key: &str) -> Result<u32, Error> {
        Ok(keys::read_count(self.shared.get(Tree::AppDataCount, app_key.as_bytes())?.as_deref()))
    }

    /// Stores `items` for the app in one transaction (each replacing the item of its key), as
    /// long as the app then holds at most `max_items` (expired items count until the sweeper
    /// removes them, within a second); returns how many were stored.
    pub fn put(&self, app_key: &str, items: &[DataItem], max_items: u32) -> Result<usize, OpError> {
        let _writer = self.shared.lock_writer();
        let mut writes = WriteSet::default();
        let mut count = self.count_of(app_key)?;
        for item in items {
            match self.stored(app_key, &item.key)? {
                Some(old) => {
                    if let Some(at) = old.expires_at {
                        writes.remove(Tree::AppDataExpiry, expiry_key(at, app_key, &item.key));
                    }
                }
                None => count += 1,
            }
            let stored = StoredItem { value: item.value.clone(), expires_at: item.expires_at };
            writes.put(Tree::AppData, item_key(app_key, &item.key), record::encode(&stored));
            if let Some(at) = item.expires_at {
                writes.put(Tree::AppDataExpiry, expiry_key(at, app_key, &item.key), Vec::new());
            }
        }
        if count > max_items {
            return Err(Rejection::DataLimit { app_key: app_key.to_owned(), held: count, max: max_items }.into());
        }
        writes.put(Tree::AppDataCount, app_key.as_bytes().to_vec(), keys::count(count).to_vec());
        self.shared.apply_now(writes)?;
        Ok(items.len())
    }

    /// The app's item under `key`, unless there is none or it expired by `now`.
    pub fn get(&self, app_key: &str, key: &str, now: i64) -> Result<Option<DataItem>, Error> {
        let item = self.stored(app_key, key)?.map(|stored| DataItem {
            key: key.to_owned(),
            value: stored.value,
            expires_at: stored.expires_at,
        });
        Ok(item.filter(|item| item.is_live(now)))
    }

    /// Removes the app's item under `key`; whether a live one was there.
    pub fn delete(&self, app_key: &str, key: &str, now: i64) -> Result<bool, Error> {
        let _writer = self.shared.lock_writer();
        let Some(old) = self.stored(app_key, key)? else { return Ok(false) };
        let mut writes = WriteSet::default();
        self.stage_removal(&mut writes, app_key, key, &old)?;
        self.shared.apply_now(writes)?;
        Ok(old.expires_at.is_none_or(|at| at > now))
    }

    fn stage_removal(&self, writes: &mut WriteSet, app_key: &str, key: &str, old: &StoredItem) -> Result<(), Error> {
        writes.remove(Tree::AppData, item_key(app_key, key));
        if let Some(at) = old.expires_at {
            writes.remove(Tree::AppDataExpiry, expiry_key(at, app_key, key));
        }
        let count = self.count_of(app_key)?.saturating_sub(1);
        if count == 0 {
            writes.remove(Tree::AppDataCount, app_key.as_bytes().to_vec());
        } else {
            writes.put(Tree::AppDataCount, app_key.as_bytes().to_vec(), keys::count(count).to_vec());
        }
        Ok(())
    }

    /// How many items the app holds (expired ones included until they are swept).
    pub fn count(&self, app_key: &str) -> Result<u32, Error> {
        self.count_of(app_key)
    }

    /// Removes up to `limit` items that expired by `now`, in one transaction per item's app;
    /// returns how many. The sweeper calls it every second.
    pub fn sweep_expired(&self, now: i64, limit: usize) -> Result<usize, Error> {
        let due = self
            .shared
            .tree(Tree::AppDataExpiry)?
            .range(..keys::expiry_bound(now).to_vec())
            .keys()
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Sled { tree: Tree::AppDataExpiry.name(), source })?;
        if due.is_empty() {
            return Ok(0);
        }
        let _writer = self.shared.lock_writer();
        let mut swept = 0;
        for entry in &due {
            let rest = keys::expiry_subscription(entry);
            let Some((app_key, key)) = rest.split_once('\0') else {
                let mut writes = WriteSet::default();
                writes.remove(Tree::AppDataExpiry, entry.to_vec());
                self.shared.apply_now(writes)?;
                continue;
            };
            let mut writes = WriteSet::default();
            match self.stored(app_key, key)? {
                Some(old) if old.expires_at.is_some_and(|at| at <= now) => {
                    self.stage_removal(&mut writes, app_key, key, &old)?;
                    swept += 1;
                }
                // Replaced since with another expiry (or none): only this queue entry is stale.
                _ => writes.remove(Tree::AppDataExpiry, entry.to_vec()),
            }
            self.shared.apply_now(writes)?;
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::data::DataItem;
    use crate::store::Store;

    fn item(key: &str, value: &str, expires_at: Option<i64>) -> DataItem {
        DataItem { key: key.into(), value: value.into(), expires_at }
    }

    #[test]
    fn items_are_kept_per_app_expire_and_are_swept_with_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = store.data();
        data.put("a", &[item("k", "1", None), item("t", "x", Some(100))], 10).unwrap();
        data.put("b", &[item("k", "other app", None)], 10).unwrap();
        assert_eq!(data.get("a", "k", 50).unwrap().map(|i| i.value), Some("1".into()));
        assert_eq!(data.get("b", "k", 50).unwrap().map(|i| i.value), Some("other app".into()), "apps apart");
        assert!(data.get("a", "t", 99).unwrap().is_some());
        assert!(data.get("a", "t", 100).unwrap().is_none(), "expired at its time");
        // Replacing an item moves its expiry; the old queue entry is stale and swept harmlessly.
        data.put("a", &[item("t", "y", Some(200))], 10).unwrap();
        assert_eq!(data.count("a").unwrap(), 2);
        assert_eq!(data.sweep_expired(150, 100).unwrap(), 0);
        assert_eq!(data.get("a", "t", 150).unwrap().map(|i| i.value), Some("y".into()));
        assert_eq!(data.sweep_expired(250, 100).unwrap(), 1);
        assert_eq!(data.count("a").unwrap(), 1);
        // The limit counts the app's items after the change; a refused batch changes nothing.
        let err = data.put("a", &[item("m", "1", None), item("n", "1", None)], 2).unwrap_err();
        assert!(err.to_string().contains("at most 2"), "{err}");
        assert!(data.get("a", "m", 0).unwrap().is_none());
        assert!(data.delete("a", "k", 0).unwrap());
        assert!(!data.delete("a", "k", 0).unwrap());
        assert_eq!(data.count("a").unwrap(), 0);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.data().get("b", "k", 0).unwrap().map(|i| i.value), Some("other app".into()), "durable");
    }
}
