//! The tone registry: each app's tones, their review state, and their audio.
//!
//! A tone's record (`tones`) and its audio (`tone_audio`, one key for the approved version and one
//! for an upload waiting for review) change in one transaction. Uploads and reviews take the
//! writer lock; a review that names the revision it judged is refused if another upload came in
//! since.
//!
//! Calls ask "is this tone approved?" on the switch's hot path, so the answer comes from memory:
//! the set of serving tones per app, rebuilt at open and replaced (one atomic swap) when a tone is
//! first approved or its app is deleted. Nothing else removes a tone from it: an approved tone
//! stays playable through replacements (see `domain::tone`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::domain::tone::{Review, Tone, ToneState};
use crate::domain::Rejection;

use super::keys;
use super::record::encode;
use super::{Error, OpError, Shared, Tree, WriteSet};

/// App key → the names of its tones that have an approved version.
pub(crate) type Serving = HashMap<String, HashSet<String>>;

const APPROVED: &str = "approved";
const PENDING: &str = "pending";

/// The store's handle on the tone registry. Uploads and reviews take the writer lock and block
/// the thread; the call path's checks ([`Tones::approved`], [`Tones::check`]) answer from memory.
#[derive(Debug, Clone)]
pub struct Tones {
    pub(super) shared: Arc<Shared>,
}

/// Builds the serving set from the stored records (at open).
pub(super) fn load_serving(shared: &Shared) -> Result<Serving, Error> {
    let mut serving = Serving::new();
    for item in shared.tree(Tree::Tones)?.iter() {
        let (key, value) = item.map_err(|source| Error::Sled { tree: Tree::Tones.name(), source })?;
        let tone: Tone = super::record::decode(Tree::Tones.name(), &key, &value)?;
        if tone.serving() {
            let text = String::from_utf8_lossy(&key);
            let app_key = text.split('\0').next().unwrap_or_default();
            serving.entry(app_key.to_owned()).or_default().insert(tone.file_name);
        }
    }
    Ok(serving)
}

/// Stages the removal of every tone of an app (its deletion); the caller holds the writer lock
/// and calls [`forget_serving`] after the commit.
pub(super) fn stage_removal(shared: &Shared, app_key: &str, writes: &mut WriteSet) -> Result<(), Error> {
    let prefix = keys::prefix(&[app_key]);
    for tree in [Tree::Tones, Tree::ToneAudio] {
        for key in shared.keys_with_prefix(tree, &prefix)? {
            writes.remove(tree, key.to_vec());
        }
    }
    Ok(())
}

/// Drops a deleted app's tones from the serving set.
pub(super) fn forget_serving(shared: &Shared, app_key: &str) {
    change_serving(shared, |serving| {
        serving.remove(app_key);
    });
}

/// Replaces the serving set with a changed copy. Called with the writer lock held, so changes
/// do not race; readers see the old set or the new one, never a half-changed one.
fn change_serving(shared: &Shared, change: impl FnOnce(&mut Serving)) {
    let mut serving = Serving::clone(&shared.serving_tones.load());
    change(&mut serving);
    shared.serving_tones.store(Arc::new(serving));
}

impl Tones {
    /// Whether `file_name` is an approved tone of the app: what bindings and decisions may name.
    /// Lock-free; answers from memory.
    pub fn approved(&self, app_key: &str, file_name: &str) -> bool {
        self.shared.serving_tones.load().get(app_key).is_some_and(|names| names.contains(file_name))
    }

    /// The first of `names` that is not an approved tone of the app, as the rejection a bind gets.
    pub fn check<'a>(&self, app_key: &str, names: impl IntoIterator<Item = &'a str>) -> Result<(), Rejection> {
        let serving = self.shared.serving_tones.load();
        let approved = serving.get(app_key);
        match names.into_iter().find(|name| !approved.is_some_and(|set| set.contains(*name))) {
            Some(file) => {
                // Only on the way to a refusal: is it uploaded, but not approved yet?
                let record: Option<Tone> =
                    self.shared.get_record(Tree::Tones, &keys::join(&[app_key, file])).ok().flatten();
                let waiting = record.is_some_and(|tone| tone.state == ToneState::Pending);
                Err(Rejection::UnknownTone { file: file.to_owned(), waiting })
            }
            None => Ok(()),
        }
    }

    /// Stores a new upload (already in the carrier format), pending review. An approved version of
    /// the same name keeps serving until the upload is approved.
    pub fn upload(
        &self,
        app_key: &str,
        file_name: &str,
        audio: &[u8],
        seconds: f64,
        converted: bool,
        now: i64,
    ) -> Result<Tone, OpError> {
        let _writer = self.shared.lock_writer();
        if self.shared.app(app_key).is_none() {
            return Err(Rejection::NotFound { what: format!("app {app_key}") }.into());
        }
        let key = keys::join(&[app_key, file_name]);
        let previous: Option<Tone> = self.shared.get_record(Tree::Tones, &key)?;
        let tone = Tone::uploaded(file_name, previous.as_ref(), now, audio.len(), seconds, converted);
        let mut writes = WriteSet::default();
        writes.put(Tree::Tones, key, encode(&tone));
        writes.put(Tree::ToneAudio, keys::join(&[app_key, file_name, PENDING]), audio);
        self.shared.apply_now(writes)?;
        Ok(tone)
    }

    /// Approves or rejects the upload waiting for review. Approving makes it the audio calls play.
    pub fn review(
        &self,
        app_key: &str,
        file_name: &str,
        review: &Review,
        revision: Option<u64>,
        now: i64,
    ) -> Result<Tone, OpError> {
        let _writer = self.shared.lock_writer();
        let key = keys::join(&[app_key, file_name]);
        let Some(tone) = self.shared.get_record::<Tone>(Tree::Tones, &key)? else {
            return Err(Rejection::NotFound { what: format!("tone {file_name} of app {app_key}") }.into());
        };
        let reviewed = tone.reviewed(review, revision, now).map_err(|what| Rejection::InUse { what })?;
        let pending_key = keys::join(&[app_key, file_name, PENDING]);
        let mut writes = WriteSet::default();
        writes.put(Tree::Tones, key, encode(&reviewed));
        writes.remove(Tree::ToneAudio, pending_key.clone());
        if *review == Review::Approve {
            let audio = self.shared.get(Tree::ToneAudio, &pending_key)?.ok_or_else(|| Error::Decode {
                tree: Tree::ToneAudio.name(),
                key: super::show_key(&pending_key),
                reason: "the tone's record says an upload is pending, but its audio is missing".to_owned(),
            })?;
            writes.put(Tree::ToneAudio, keys::join(&[app_key, file_name, APPROVED]), audio.to_vec());
        }
        self.shared.apply_now(writes)?;
        if reviewed.serving() && !tone.serving() {
            change_serving(&self.shared, |serving| {
                serving.entry(app_key.to_owned()).or_default().insert(file_name.to_owned());
            });
        }
        Ok(reviewed)
    }

    /// The app's tones, by name.
    pub fn of_app(&self, app_key: &str) -> Result<Vec<Tone>, Error> {
        self.shared.records_with_prefix(Tree::Tones, &keys::prefix(&[app_key]))
    }

    /// The approved audio of a tone: what the switch plays.
    pub fn audio(&self, app_key: &str, file_name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.shared.get(Tree::ToneAudio, &keys::join(&[app_key, file_name, APPROVED]))?.map(|audio| audio.to_vec()))
    }

    /// The audio a reviewer should hear: the upload waiting for review, else the approved one,
    /// with its record (whose `revision` or `serving_revision` says which upload it is).
    pub fn audio_for_review(&self, app_key: &str, file_name: &str) -> Result<Option<(Tone, bool, Vec<u8>)>, Error> {
        let Some(tone) = self.shared.get_record::<Tone>(Tree::Tones, &keys::join(&[app_key, file_name]))? else {
            return Ok(None);
        };
        for (which, pending) in [(PENDING, true), (APPROVED, false)] {
            if let Some(audio) = self.shared.get(Tree::ToneAudio, &keys::join(&[app_key, file_name, which]))? {
                return Ok(Some((tone, pending, audio.to_vec())));
            }
        }
        Ok(None)
    }
}
