//! Every key encoding of the store, in one place.
//!
//! Keys are byte strings whose order is meaningful to sled's range scans. Parts are joined with a
//! NUL byte, which no app key, number or subscription id may contain (the domain checks them), so
//! `prefix(a)` selects exactly the keys that start with part `a`.
//!
//! `outbox` and `sessions` are kept in the call log (`calllog.rs`), every other tree in sled; the
//! encodings are the same in both.
//!
//! | tree         | key                                   | value                         |
//! |--------------|---------------------------------------|-------------------------------|
//! | `apps`       | app key                               | record `App`                  |
//! | `numbers`    | X                                     | record `XNumber`              |
//! | `app_area`   | app key, normalized area code, X      | empty (the pool index)        |
//! | `axb`        | subscription id                       | record `AxbBinding`           |
//! | `axb_user`   | X, user number (A or B)               | subscription id               |
//! | `axb_x`      | X, subscription id                    | empty (list a X's bindings)   |
//! | `axb_pairs`  | X                                     | bindings on X, u32 big-endian (every mode: AXB pairs, the AX binding, AXE extensions) |
//! | `axb_expiry` | expiry (8 bytes, ordered), sub. id    | empty (the expiry queue)      |
//! | `ax`         | subscription id                       | record `AxBinding` (with its temporary callee) |
//! | `ax_x`       | X                                     | subscription id (one A per X) |
//! | `ax_a`       | app key, A, X                         | subscription id (at most 5 X per A in an app) |
//! | `axe`        | subscription id                       | record `AxeBinding`           |
//! | `axe_ext`    | X, extension                          | subscription id (one binding per E) |
//! | `axe_user`   | X, A                                  | subscription id (one E per A on X) |
//! | `axe_expiry` | expiry (8 bytes, ordered), sub. id    | empty (the expiry queue)      |
//! | `axe_order`  | app key, seq (8 bytes BE, taken under the writer lock) | subscription id (the v2.0 cursor order) |
//! | `axe_callback` | X, A                                | record `Callback` (the latest party who reached A: AXE through E, AX by memory callback) |
//! | `nonces`     | app key, nonce                        | `Created`, i64 big-endian     |
//! | `nonce_expiry` | `Created` (8 bytes, ordered), app key, nonce | empty (the sweep queue) |
//! | `app_data`   | app key, item key                     | record (value, expiry) of a customer data item |
//! | `app_data_expiry` | expiry (8 bytes, ordered), app key, item key | empty (the sweep queue) |
//! | `app_data_count` | app key                           | items the app holds, u32 big-endian |
//! | `rulesets`   | app key, version number (8 bytes BE) | record `RulesetVersion` (every version kept) |
//! | `ruleset_active` | app key                           | the active version's name (no entry: off) |
//! | `ruleset_audit` | entry number (8 bytes BE, taken under the writer lock) | record `AuditEntry` |
//! | `answered`   | app key, the two parties (in order), end time (8 bytes, ordered), icid | empty (an answered call, for rule sets' `answered_calls`; kept `ANSWERED_RETENTION_SECS`) |
//! | `answered_expiry` | end time (8 bytes, ordered), app key, parties, icid | empty (the sweep queue) |
//! | `outbox`     | app key, lane, push id (8 bytes BE)   | record `Push` (FIFO per lane) |
//! | `outbox_dead`| push id (8 bytes BE)                  | record `Push` (retries used up) |
//! | spill (`outbox_spill/*.seg`, files of its own) | as `outbox` | as `outbox` (pushes beyond the memory budget, `spill.rs`) |
//! | `sessions`   | session id                            | record `Session` (calls under way) |
//! | `recordings` | app key, recording object name        | empty (a call of the app reported it; older stores: object name → app key) |
//! | `tones`      | app key, file name                    | record `Tone` (state, review) |
//! | `tone_audio` | app key, file name, `approved`/`pending` | the WAV, A-law 8000 Hz mono |

const SEPARATOR: u8 = 0;

/// `a NUL b`, and so on for more parts.
pub(crate) fn join(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            key.push(SEPARATOR);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The prefix that selects every key whose first parts are `parts`.
pub(crate) fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut key = join(parts);
    key.push(SEPARATOR);
    key
}

/// The first bound after every key that starts with `prefix` (a [`prefix`]): the prefix with its
/// closing separator raised by one, for a range scan that skips them all.
pub(crate) fn past_prefix(mut prefix: Vec<u8>) -> Vec<u8> {
    if let Some(last) = prefix.last_mut() {
        *last = SEPARATOR + 1;
    }
    prefix
}

/// The first `n` NUL-separated parts of a key (fewer if it has fewer); the parts after them, such
/// as a binary id that may hold a NUL byte, are not split.
pub(crate) fn first_parts(key: &[u8], n: usize) -> Vec<&[u8]> {
    key.splitn(n + 1, |&b| b == SEPARATOR).take(n).collect()
}

/// The last NUL-separated part of a key, as text.
pub(crate) fn last_part(key: &[u8]) -> String {
    let start = key.iter().rposition(|&b| b == SEPARATOR).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&key[start..]).into_owned()
}

/// Expiry keys sort by time: the sign bit is flipped so negative instants sort first.
pub(crate) fn expiry(at: i64, subscription_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + subscription_id.len());
    key.extend_from_slice(&time_bytes(at));
    key.extend_from_slice(subscription_id.as_bytes());
    key
}

/// The expiry keys of everything that expired at or before `at` sort below this bound.
pub(crate) fn expiry_bound(at: i64) -> [u8; 8] {
    time_bytes(at.saturating_add(1))
}

pub(crate) fn time_bytes(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

/// The subscription id of an expiry key.
pub(crate) fn expiry_subscription(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned()
}

/// `app key NUL seq`: the app's AXE bindings in the order they were committed, for cursors. The
/// sequence number is taken under the writer lock, so a binding committed later always sorts
/// later (a creation time read before the lock would not).
pub(crate) fn order(app_key: &str, seq: u64) -> Vec<u8> {
    let mut key = prefix(&[app_key]);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn count(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

pub(crate) fn read_count(bytes: Option<&[u8]>) -> u32 {
    bytes.and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time() {
        let early = expiry(-5, "b");
        let later = expiry(10, "a");
        assert!(early < later);
        assert!(later.as_slice() < expiry_bound(10).as_slice());
        assert!(later.as_slice() >= expiry_bound(9).as_slice());
        assert_eq!(expiry_subscription(&later), "a");
    }

    #[test]
    fn joined_keys_split_back() {
        let key = join(&["+861", "sub-1"]);
        assert!(key.starts_with(&prefix(&["+861"])));
        assert_eq!(last_part(&key), "sub-1");
    }
}
