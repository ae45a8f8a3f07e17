//! Replay protection: each `(app key, Nonce)` is accepted once within the skew window.
//!
//! Nonces live in their own tree, outside the binding transactions, and are not flushed per
//! request: after a crash the last half second of nonces may be forgotten, which re-opens a replay
//! window only for requests that were already accepted once. A nonce older than the skew window can
//! no longer pass the `Created` check, so the sweeper drops it.

use super::{keys, Error, Store};

impl Store {
    /// Records a nonce; `false` when it was already seen (a replay).
    pub fn remember_nonce(&self, app_key: &str, nonce: &str, created_at: i64) -> Result<bool, Error> {
        let key = keys::join(&[app_key, nonce]);
        let inserted = self
            .nonces
            .compare_and_swap(key, None as Option<&[u8]>, Some(&created_at.to_be_bytes()[..]))
            .map_err(|source| Error::Sled { tree: "nonces", source })?;
        Ok(inserted.is_ok())
    }

    /// Drops nonces created before `before`; returns how many.
    pub fn forget_nonces_before(&self, before: i64) -> Result<usize, Error> {
        let mut forgotten = 0;
        for item in self.nonces.iter() {
            let (key, value) = item.map_err(|source| Error::Sled { tree: "nonces", source })?;
            let created_at = value.as_ref().try_into().map_or(i64::MIN, i64::from_be_bytes);
            if created_at < before {
                self.nonces.remove(key).map_err(|source| Error::Sled { tree: "nonces", source })?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}
