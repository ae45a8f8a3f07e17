//! Tones (voice files): their names, and their review.
//!
//! A tone is named by its file name, at most 128 characters of `[A-Za-z0-9-_.@]` (docs/compatibility.md,
//! Requests and signing). Each app has its own tones. A tone is uploaded, then reviewed: only an approved tone is
//! played or may be named by a binding or a decision.
//!
//! Replacing a tone never silences it: a new upload under an approved name waits for review while
//! the approved audio keeps serving, and a rejected replacement leaves it in place. So once a tone
//! is approved it stays playable, and a binding that named it stays valid.

use serde::{Deserialize, Serialize};

const MAX_TONE_NAME: usize = 128;

/// The longest rejection reason kept, in characters.
pub const MAX_REASON: usize = 256;

/// Why a tone name is not acceptable; the caller adds the field name.
pub fn check_tone_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TONE_NAME {
        return Err(format!("{name:?} must be 1 to {MAX_TONE_NAME} characters"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    if let Some(bad) = name.chars().find(|&c| !ok_char(c)) {
        return Err(format!("{name:?} contains {bad:?}; tone names use only letters, digits, '-', '_', '.' and '@'"));
    }
    if name.bytes().all(|b| b == b'.') {
        return Err(format!("{name:?} is not a file name"));
    }
    Ok(())
}

/// Where the latest upload of a tone stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToneState {
    Pending,
    Approved,
    Rejected,
}

/// A tone as the registry keeps it and the admin API lists it. The audio is kept apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tone {
    pub file_name: String,
    /// The latest upload's number: 1 for the first, one more for each replacement. A review may
    /// name the revision it judged, so that a replacement uploaded meanwhile is not approved unheard.
    pub revision: u64,
    /// The latest upload's state.
    pub state: ToneState,
    /// Why the latest upload was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds.
    pub uploaded_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<i64>,
    /// The latest upload, after conversion: its size in bytes and length in seconds.
    pub bytes: usize,
    pub seconds: f64,
    /// The upload was converted to the carrier format (false: it was already in it).
    pub converted: bool,
    /// The approved revision calls play: this upload's, or an earlier one's while this one waits
    /// for review or after it was rejected. `None`: nothing plays yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_revision: Option<u64>,
}

impl Tone {
    /// An approved version of this tone is what calls play.
    pub fn serving(&self) -> bool {
        self.serving_revision.is_some()
    }

    /// A new upload: pending, serving whatever was approved before.
    pub fn uploaded(
        file_name: &str,
        previous: Option<&Tone>,
        now: i64,
        bytes: usize,
        seconds: f64,
        converted: bool,
    ) -> Tone {
        Tone {
            file_name: file_name.to_owned(),
            revision: previous.map_or(1, |tone| tone.revision + 1),
            state: ToneState::Pending,
            reason: None,
            uploaded_at: now,
            reviewed_at: None,
            bytes,
            seconds,
            converted,
            serving_revision: previous.and_then(|tone| tone.serving_revision),
        }
    }

    /// Applies a review to the pending upload; refused (with the reason) when none is pending, or
    /// when the review names a revision that is no longer the latest.
    pub fn reviewed(&self, review: &Review, revision: Option<u64>, now: i64) -> Result<Tone, String> {
        if let Some(judged) = revision.filter(|judged| *judged != self.revision) {
            return Err(format!(
                "tone {} was uploaded again since revision {judged}: listen to revision {} and review that",
                self.file_name, self.revision
            ));
        }
        if self.state != ToneState::Pending {
            let state = match self.state {
                ToneState::Approved => "approved",
                _ => "rejected",
            };
            return Err(format!("tone {} has no upload waiting for review: it was {state}", self.file_name));
        }
        let mut tone = self.clone();
        tone.reviewed_at = Some(now);
        match review {
            Review::Approve => {
                tone.state = ToneState::Approved;
                tone.serving_revision = Some(self.revision);
            }
            Review::Reject { reason } => {
                tone.state = ToneState::Rejected;
                tone.reason = Some(reason.clone());
            }
        }
        Ok(tone)
    }
}

/// A reviewer's verdict on a pending upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    Approve,
    Reject { reason: String },
}

impl Review {
    /// Reads `{"approve": true}` or `{"approve": false, "reason": "…"}`, with an optional
    /// `"revision"` (the upload judged); a rejection needs a reason.
    pub fn parse(fields: &super::Fields<'_>) -> Result<(Review, Option<u64>), super::fields::Invalid> {
        let revision = fields.integer("revision", 1..=i64::MAX)?.and_then(|n| u64::try_from(n).ok());
        Ok((Review::parse_verdict(fields)?, revision))
    }

    fn parse_verdict(fields: &super::Fields<'_>) -> Result<Review, super::fields::Invalid> {
        use super::fields::Invalid;
        let approve = fields.flag("approve")?.ok_or_else(|| Invalid::new("approve", "is required (true or false)"))?;
        let reason = fields.string("reason")?.map_or("", str::trim);
        if approve {
            return Ok(Review::Approve);
        }
        if reason.is_empty() {
            return Err(Invalid::new("reason", "is required when a tone is rejected"));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(Invalid::new("reason", format!("is longer than {MAX_REASON} characters")));
        }
        Ok(Review::Reject { reason: reason.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Fields;
    use serde_json::json;

    #[test]
    fn tone_names_follow_the_carrier_alphabet() {
        assert!(check_tone_name("record-hint_01@v2.wav").is_ok());
        assert!(check_tone_name("").is_err());
        assert!(check_tone_name("a b.wav").is_err());
        assert!(check_tone_name("../etc/passwd").is_err());
        assert!(check_tone_name(&"a".repeat(129)).is_err());
        for dots in [".", "..", "..."] {
            assert!(check_tone_name(dots).is_err(), "{dots} names a directory, not a tone");
        }
        assert!(check_tone_name(".hidden.wav").is_ok());
    }

    fn review(body: serde_json::Value) -> Result<Review, String> {
        let map = body.as_object().cloned().unwrap_or_default();
        Review::parse(&Fields::new(&map)).map(|(review, _)| review).map_err(|invalid| invalid.field)
    }

    #[test]
    fn a_review_approves_or_rejects_with_a_reason() {
        assert_eq!(review(json!({"approve": true})), Ok(Review::Approve));
        assert_eq!(review(json!({"approve": "true"})), Ok(Review::Approve));
        assert_eq!(
            review(json!({"approve": false, "reason": " too loud "})),
            Ok(Review::Reject { reason: "too loud".into() })
        );
        assert_eq!(review(json!({"approve": false})), Err("reason".into()));
        assert_eq!(review(json!({"approve": false, "reason": "x".repeat(257)})), Err("reason".into()));
        assert_eq!(review(json!({"reason": "x"})), Err("approve".into()));
        assert_eq!(review(json!({"approve": 1})), Err("approve".into()));
        assert_eq!(review(json!({"approve": true, "revision": 0})), Err("revision".into()));
    }

    #[test]
    fn an_approved_tone_keeps_serving_through_a_replacement() {
        let first = Tone::uploaded("hint.wav", None, 10, 8058, 1.0, true);
        assert_eq!((first.state, first.serving()), (ToneState::Pending, false));
        let approved = first.reviewed(&Review::Approve, Some(1), 11).unwrap();
        assert_eq!((approved.state, approved.serving(), approved.reviewed_at), (ToneState::Approved, true, Some(11)));
        assert!(approved.reviewed(&Review::Approve, None, 12).unwrap_err().contains("approved"));

        let replacement = Tone::uploaded("hint.wav", Some(&approved), 20, 9000, 1.1, false);
        assert_eq!((replacement.state, replacement.serving(), replacement.revision), (ToneState::Pending, true, 2));
        assert_eq!(replacement.serving_revision, Some(1));
        let stale = replacement.reviewed(&Review::Approve, Some(1), 21).unwrap_err();
        assert!(stale.contains("revision 2"), "a review of what the reviewer heard, not of a later upload: {stale}");
        let rejected = replacement.reviewed(&Review::Reject { reason: "clipped".into() }, None, 21).unwrap();
        assert_eq!((rejected.state, rejected.serving()), (ToneState::Rejected, true), "the approved audio stays");
        assert_eq!(rejected.reason.as_deref(), Some("clipped"));
        assert!(rejected.reviewed(&Review::Approve, None, 22).unwrap_err().contains("rejected"));

        let never = Tone::uploaded("new.wav", None, 30, 100, 0.1, false).reviewed(
            &Review::Reject { reason: "no".into() },
            None,
            31,
        );
        assert!(!never.unwrap().serving());
    }
}
