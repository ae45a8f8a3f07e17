//! Replay protection: each `(app key, Nonce)` is accepted once within the skew window.
//!
//! Nonces live in their own trees, outside the binding transactions, and are not flushed per
//! request: after a crash the last half second of nonces may be forgotten, which re-opens a replay
//! window only for requests that were already accepted once. `nonce_expiry` files each nonce under
//! its `Created` time, so the sweeper drops old nonces with one range scan instead of reading them
//! all; a nonce older than the skew window can no longer pass the `Created` check anyway.

use super::{keys, Error, Store};

fn sled_error(source: sled::Error) -> Error {
    Error::Sled { tree: "nonces", source }
}

impl Store {
    /// Records a nonce; `false` when it was already seen (a replay).
    pub fn remember_nonce(&self, app_key: &str, nonce: &str, created_at: i64) -> Result<bool, Error> {
        let key = keys::join(&[app_key, nonce]);
        // The sweep entry first: a crash between the two writes leaves an entry whose nonce is
        // missing (the sweep drops it), never a nonce no sweep will find. A replay carries the
        // same Created, so writing its entry again changes nothing.
        let mut expiry = keys::expiry(created_at, "").to_vec();
        expiry.extend_from_slice(&key);
        self.nonce_expiry.insert(expiry, &[]).map_err(sled_error)?;
        let inserted = self
            .nonces
            .compare_and_swap(&key, None as Option<&[u8]>, Some(&created_at.to_be_bytes()[..]))
            .map_err(sled_error)?;
        Ok(inserted.is_ok())
    }

    /// Drops nonces created before `before`; returns how many.
    pub fn forget_nonces_before(&self, before: i64) -> Result<usize, Error> {
        let mut forgotten = 0;
        for item in self.nonce_expiry.range(..keys::expiry_bound(before.saturating_sub(1)).to_vec()) {
            let (expiry, _) = item.map_err(sled_error)?;
            self.nonces.remove(&expiry[8..]).map_err(sled_error)?;
            self.nonce_expiry.remove(&expiry).map_err(sled_error)?;
            forgotten += 1;
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[tokio::test]
    async fn a_nonce_is_accepted_once_until_it_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.remember_nonce("app", "n1", 100).unwrap());
        assert!(!store.remember_nonce("app", "n1", 100).unwrap());
        assert!(store.remember_nonce("other-app", "n1", 100).unwrap());
        assert!(store.remember_nonce("app", "n2", 200).unwrap());
        assert_eq!(store.forget_nonces_before(100).unwrap(), 0, "created at 100 is not before 100");
        assert_eq!(store.forget_nonces_before(101).unwrap(), 2);
        assert!(store.remember_nonce("app", "n1", 100).unwrap(), "forgotten, so accepted again");
        assert!(!store.remember_nonce("app", "n2", 300).unwrap(), "n2 is still remembered");
    }
}
