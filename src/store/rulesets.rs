//! Customer rule sets (`Store::rulesets`): every version an app submitted that passed its check,
//! which one is active, and the audit log of everything that happened to them.
//!
//! Trees (`keys.rs`): `rulesets` (app key, version number → the version), `ruleset_active` (app
//! key → the active version's name; no entry: the rule set is off) and `ruleset_audit` (entry
//! number → the entry).
//!
//! Invariants: versions are numbered per app from 1 in submission order and never removed; the
//! active version, when there is one, is an approved version of its app; every change of a
//! version or of the active pointer is written in the same sled transaction as its audit entry,
//! under the writer lock, so the log tells every change and nothing that did not happen.

use std::sync::Arc;

use super::{keys, record, Error, OpError, Shared, Tree, WriteSet};
use crate::domain::ruleset::{AuditAction, AuditEntry, ReviewState, RulesetVersion};
use crate::domain::Rejection;

/// The store's handle on customer rule sets.
#[derive(Clone)]
pub struct Rulesets {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Rulesets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rulesets").finish_non_exhaustive()
    }
}

/// A version's name from its number, and back.
fn version_name(number: u64) -> String {
    format!("v{number}")
}

/// A version's number from its name, which must be exactly `v<number>` (`v01` and `v+1` are not
/// `v1`).
fn version_number(name: &str) -> Option<u64> {
    let number = name.strip_prefix('v').and_then(|digits| digits.parse().ok()).filter(|n| *n > 0)?;
    (version_name(number) == name).then_some(number)
}

fn version_key(app_key: &str, number: u64) -> Vec<u8> {
    let mut key = keys::prefix(&[app_key]);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Stages turning `app_key`'s rule set off, with its audit entry, when one is active (the caller
/// holds the writer lock): an app's deletion.
pub(super) fn stage_turn_off(
    shared: &Arc<Shared>,
    app_key: &str,
    now: i64,
    why: &str,
    writes: &mut WriteSet,
) -> Result<(), Error> {
    let sets = Rulesets { shared: shared.clone() };
    let Some(active) = sets.active_name(app_key)? else { return Ok(()) };
    writes.remove(Tree::RulesetActive, app_key.as_bytes().to_vec());
    let entry = AuditEntry {
        time: now,
        app_key: app_key.to_owned(),
        action: AuditAction::TurnedOff,
        version: active,
        actor: "ops".to_owned(),
        detail: why.to_owned(),
    };
    sets.stage_audit(writes, &[entry])
}

/// What a review did, for its answer: the version as reviewed, and for an approval the version
/// it replaced as active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub version: RulesetVersion,
    pub previous: Option<String>,
}

/// What an activation did, for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    /// The version now active (`None`: off).
    pub active: Option<RulesetVersion>,
    /// The one it replaced.
    pub previous: Option<String>,
}

impl Rulesets {
    fn not_found(app_key: &str, version: &str) -> OpError {
        Rejection::NotFound { what: format!("rule set version {version:?} of app {app_key}") }.into()
    }

    /// The app's version named `version`.
    pub fn get(&self, app_key: &str, version: &str) -> Result<Option<RulesetVersion>, Error> {
        let Some(number) = version_number(version) else { return Ok(None) };
        self.shared.get_record(Tree::Rulesets, &version_key(app_key, number))
    }

    /// Every version of the app, oldest first.
    pub fn versions(&self, app_key: &str) -> Result<Vec<RulesetVersion>, Error> {
        self.shared.records_with_prefix(Tree::Rulesets, &keys::prefix(&[app_key]))
    }

    /// The name of the app's active version, if its rule set is on.
    pub fn active_name(&self, app_key: &str) -> Result<Option<String>, Error> {
        let value = self.shared.get(Tree::RulesetActive, app_key.as_bytes())?;
        Ok(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Every app's active version (to load at start).
    pub fn all_active(&self) -> Result<Vec<RulesetVersion>, Error> {
        let mut active = Vec::new();
        for item in self.shared.tree(Tree::RulesetActive)?.iter() {
            let (app_key, name) = item.map_err(|source| Error::Sled { tree: Tree::RulesetActive.name(), source })?;
            let (app_key, name) = (String::from_utf8_lossy(&app_key), String::from_utf8_lossy(&name));
            if let Some(version) = self.get(&app_key, &name)? {
                active.push(version);
            }
        }
        Ok(active)
    }

    /// Versions that wait for ops' review, across apps, oldest first.
    pub fn pending(&self) -> Result<Vec<RulesetVersion>, Error> {
        let all: Vec<RulesetVersion> = super::decode_all(Tree::Rulesets, self.shared.tree(Tree::Rulesets)?.iter())?;
        let mut pending: Vec<_> = all.into_iter().filter(|v| v.state == ReviewState::Pending).collect();
        pending.sort_by_key(|v| v.submit_time);
        Ok(pending)
    }

    /// The audit log, newest first: at most `limit` entries, of one app or of all.
    pub fn audit(&self, app_key: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        let mut entries = Vec::new();
        for item in self.shared.tree(Tree::RulesetAudit)?.iter().rev() {
            let (key, value) = item.map_err(|source| Error::Sled { tree: Tree::RulesetAudit.name(), source })?;
            let entry: AuditEntry = record::decode(Tree::RulesetAudit.name(), &key, &value)?;
            if app_key.is_none_or(|app| app == entry.app_key) {
                entries.push(entry);
                if entries.len() >= limit {
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// Stages `entries` as the audit log's next ones (the caller holds the writer lock).
    fn stage_audit(&self, writes: &mut WriteSet, entries: &[AuditEntry]) -> Result<(), Error> {
        let last = self
            .shared
            .tree(Tree::RulesetAudit)?
            .last()
            .map_err(|source| Error::Sled { tree: Tree::RulesetAudit.name(), source })?;
        let next = last
            .and_then(|(key, _)| <[u8; 8]>::try_from(key.as_ref()).ok())
            .map_or(1, |key| u64::from_be_bytes(key) + 1);
        for (number, entry) in (next..).zip(entries) {
            writes.put(Tree::RulesetAudit, number.to_be_bytes().to_vec(), record::encode(entry));
        }
        Ok(())
    }

    /// Records a submission that failed its check (only the audit log keeps it).
    pub fn refused(&self, entry: &AuditEntry) -> Result<(), Error> {
        let _writer = self.shared.lock_writer();
        let mut writes = WriteSet::default();
        self.stage_audit(&mut writes, std::slice::from_ref(entry))?;
        self.shared.apply_now(writes)
    }

    /// Keeps a checked version as the app's next one (its `version` is set here), with its audit
    /// entry; `activate` also makes it active (`ruleset_review = "auto"`). Returns it as kept.
    pub fn submit(&self, mut version: RulesetVersion, activate: bool, actor: &str) -> Result<RulesetVersion, Error> {
        let _writer = self.shared.lock_writer();
        let app_key = version.app_key.clone();
        let last = self
            .shared
            .tree(Tree::Rulesets)?
            .scan_prefix(keys::prefix(&[&app_key]))
            .keys()
            .next_back()
            .transpose()
            .map_err(|source| Error::Sled { tree: Tree::Rulesets.name(), source })?;
        let number = last
            .and_then(|key| key.len().checked_sub(8).and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok()))
            .map_or(1, |tail| u64::from_be_bytes(tail) + 1);
        version.version = version_name(number);
        let mut writes = WriteSet::default();
        writes.put(Tree::Rulesets, version_key(&app_key, number), record::encode(&version));
        let entry = |action, detail: String| AuditEntry {
            time: version.submit_time,
            app_key: app_key.clone(),
            action,
            version: version.version.clone(),
            actor: actor.to_owned(),
            detail,
        };
        let checked =
            format!("checked: {} case(s) passed, {} probe call(s)", version.cases_passed, version.probe_calls);
        let mut entries = vec![entry(AuditAction::Submitted, checked)];
        if activate {
            let previous = self.active_name(&app_key)?;
            writes.put(Tree::RulesetActive, app_key.as_bytes().to_vec(), version.version.as_bytes().to_vec());
            let detail = match previous {
                Some(previous) => format!("replaces {previous}; ruleset_review = auto"),
                None => "ruleset_review = auto".to_owned(),
            };
            entries.push(entry(AuditAction::Activated, detail));
        }
        self.stage_audit(&mut writes, &entries)?;
        self.shared.apply_now(writes)?;
        Ok(version)
    }

    /// Ops' review of a pending version: approved, which makes it active in the same transaction,
    /// or rejected with `reason`. A version that does not wait for review is refused, naming its
    /// state.
    pub fn review(
        &self,
        app_key: &str,
        version: &str,
        approve: bool,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Reviewed, OpError> {
        let _writer = self.shared.lock_writer();
        let Some(number) = version_number(version) else { return Err(Rulesets::not_found(app_key, version)) };
        let key = version_key(app_key, number);
        let Some(mut kept) = self.shared.get_record::<RulesetVersion>(Tree::Rulesets, &key)? else {
            return Err(Rulesets::not_found(app_key, version));
        };
        if kept.state != ReviewState::Pending {
            return Err(Rejection::InUse {
                what: format!(
                    "rule set {version} of app {app_key} is {}, not pending: only a pending version is reviewed",
                    kept.state.name()
                ),
            }
            .into());
        }
        kept.state = if approve { ReviewState::Approved } else { ReviewState::Rejected };
        kept.review_reason = reason.map(str::to_owned);
        kept.review_time = Some(now);
        let mut writes = WriteSet::default();
        writes.put(Tree::Rulesets, key, record::encode(&kept));
        let entry = |action, detail: String| AuditEntry {
            time: now,
            app_key: app_key.to_owned(),
            action,
            version: version.to_owned(),
            actor: "ops".to_owned(),
            detail,
        };
        let mut entries = vec![entry(
            if approve { AuditAction::Approved } else { AuditAction::Rejected },
            reason.unwrap_or_default().to_owned(),
        )];
        let previous = self.active_name(app_key)?;
        if approve {
            // Approval makes it active, in the same transaction.
            writes.put(Tree::RulesetActive, app_key.as_bytes().to_vec(), version.as_bytes().to_vec());
            let detail = previous.as_ref().map(|p| format!("replaces {p}")).unwrap_or_default();
            entries.push(entry(AuditAction::Activated, detail));
        }
        self.stage_audit(&mut writes, &entries)?;
        self.shared.apply_now(writes)?;
        Ok(Reviewed { version: kept, previous: approve.then_some(previous).flatten() })
    }

    /// Makes `version` the app's active one (an earlier one than the active: a rollback), or turns
    /// the rule set off (`""`). Only an approved version may be active.
    pub fn activate(&self, app_key: &str, version: &str, actor: &str, now: i64) -> Result<Activated, OpError> {
        let _writer = self.shared.lock_writer();
        let previous = self.active_name(app_key)?;
        let mut writes = WriteSet::default();
        let entry = |action, version: &str, detail: String| AuditEntry {
            time: now,
            app_key: app_key.to_owned(),
            action,
            version: version.to_owned(),
            actor: actor.to_owned(),
            detail,
        };
        if version.is_empty() {
            writes.remove(Tree::RulesetActive, app_key.as_bytes().to_vec());
            let was = previous.clone().unwrap_or_default();
            let detail = if was.is_empty() { "it was already off".to_owned() } else { format!("{was} was active") };
            self.stage_audit(&mut writes, &[entry(AuditAction::TurnedOff, &was, detail)])?;
            self.shared.apply_now(writes)?;
            return Ok(Activated { active: None, previous });
        }
        let Some(kept) = self.get(app_key, version)? else { return Err(Rulesets::not_found(app_key, version)) };
        if kept.state != ReviewState::Approved {
            let why = match kept.state {
                ReviewState::Pending => "it waits for ops' review".to_owned(),
                ReviewState::Rejected => {
                    format!("ops rejected it: {}", kept.review_reason.as_deref().unwrap_or("no reason given"))
                }
                ReviewState::Approved => String::new(),
            };
            return Err(
                Rejection::Ruleset { reason: format!("rule set {version} cannot be made active: {why}") }.into()
            );
        }
        let older = previous
            .as_deref()
            .and_then(version_number)
            .zip(version_number(version))
            .is_some_and(|(was, now)| now < was);
        let action = if older { AuditAction::RolledBack } else { AuditAction::Activated };
        let detail = previous.as_ref().map(|p| format!("replaces {p}")).unwrap_or_default();
        writes.put(Tree::RulesetActive, app_key.as_bytes().to_vec(), kept.version.as_bytes().to_vec());
        self.stage_audit(&mut writes, &[entry(action, &kept.version, detail)])?;
        self.shared.apply_now(writes)?;
        Ok(Activated { active: Some(kept), previous })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ruleset::Handler;
    use crate::store::Store;

    fn version(app_key: &str, time: i64) -> RulesetVersion {
        RulesetVersion {
            app_key: app_key.into(),
            version: String::new(),
            source: "fn on_decision(e, d) { () }".into(),
            cases: Vec::new(),
            sha256: "00".into(),
            note: String::new(),
            submit_time: time,
            submitter: app_key.into(),
            state: ReviewState::Pending,
            review_reason: None,
            review_time: None,
            handlers: vec![Handler::Decision],
            cases_passed: 0,
            probe_calls: 0,
        }
    }

    #[test]
    fn versions_are_numbered_reviewed_activated_and_audited_per_app() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sets = store.rulesets();
        assert_eq!(sets.submit(version("a", 1), false, "app:a").unwrap().version, "v1");
        assert_eq!(sets.submit(version("b", 2), false, "app:b").unwrap().version, "v1", "numbered per app");
        assert_eq!(sets.submit(version("a", 3), false, "app:a").unwrap().version, "v2");
        assert_eq!(sets.pending().unwrap().len(), 3);
        let err = sets.activate("a", "v1", "app:a", 4).unwrap_err();
        assert!(err.to_string().contains("waits for ops' review"), "{err}");
        sets.review("a", "v1", true, None, 5).unwrap();
        sets.review("a", "v2", false, Some("calls 8020 on every call"), 6).unwrap();
        assert!(sets.review("a", "v2", true, None, 7).unwrap_err().to_string().contains("rejected, not pending"));
        let err = sets.activate("a", "v2", "app:a", 8).unwrap_err();
        assert!(err.to_string().contains("calls 8020 on every call"), "{err}");
        assert!(sets.activate("a", "v9", "app:a", 8).unwrap_err().to_string().contains("v9"));
        let on = sets.activate("a", "v1", "app:a", 9).unwrap();
        assert_eq!(on.active.map(|v| v.version), Some("v1".into()));
        assert_eq!(sets.active_name("a").unwrap().as_deref(), Some("v1"));
        assert_eq!(sets.active_name("b").unwrap(), None, "apps apart");
        let auto = sets.submit(version("a", 10), true, "app:a").unwrap();
        assert_eq!(sets.active_name("a").unwrap(), Some(auto.version.clone()));
        assert_eq!(sets.activate("a", "v1", "app:a", 11).unwrap().previous.as_deref(), Some("v3"));
        sets.activate("a", "", "ops", 12).unwrap();
        assert_eq!(sets.active_name("a").unwrap(), None);
        let actions: Vec<_> = sets.audit(Some("a"), 100).unwrap().into_iter().map(|e| e.action).collect();
        use AuditAction::*;
        assert_eq!(
            actions,
            [
                TurnedOff, RolledBack, Activated, Submitted, Activated, Rejected, Activated, Approved, Submitted,
                Submitted
            ],
            "an approval activates, in the same change"
        );
        assert_eq!(sets.audit(None, 100).unwrap().len(), 11);
        assert!(sets.get("a", "v01").unwrap().is_none() && sets.get("a", "v+1").unwrap().is_none(), "names are exact");
        assert_eq!(sets.audit(None, 2).unwrap().len(), 2);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.rulesets().versions("a").unwrap().len(), 3, "durable");
        assert!(store.rulesets().all_active().unwrap().is_empty());
    }
}
