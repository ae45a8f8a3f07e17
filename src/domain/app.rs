//! Apps: a customer's application, its mode and the settings that shape its calls.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The binding mode of an app. One mode per app, as on the Huawei platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "AXB")]
    Axb,
    #[serde(rename = "AX")]
    Ax,
    #[serde(rename = "AXE")]
    Axe,
    #[serde(rename = "X")]
    X,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Axb => "AXB",
            Mode::Ax => "AX",
            Mode::Axe => "AXE",
            Mode::X => "X",
        })
    }
}

/// An app as privnum keeps it. The X numbers of its pool are kept apart ([`super::XNumber`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub app_key: String,
    pub app_secret: String,
    pub mode: Mode,
    pub scenario: String,
    pub recording: bool,
    pub record_hint_tone: String,
    pub close_hint_tone: String,
    pub extension_digits: u8,
    pub extension_prompt: String,
    pub sms: bool,
    pub sms_scenario: String,
    pub call_event_url: String,
    pub cdr_url: String,
    pub sms_url: String,
    pub sms_control_url: String,
    pub callin_url: String,
    /// AX memory callback's window in minutes; 0: off.
    #[serde(default)]
    pub memory_callback_minutes: u32,
    /// How its customer rule sets are reviewed and the sandbox they run in (flat, as in
    /// `[[apps]]`: `ruleset_review`, …).
    #[serde(flatten)]
    pub ruleset: RulesetSettings,
}

/// An app's customer rule-set settings (`ruleset_review`, `ruleset_max_operations`,
/// `ruleset_deadline_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RulesetSettings {
    #[serde(rename = "ruleset_review")]
    pub review: super::ruleset::Review,
    #[serde(rename = "ruleset_max_operations")]
    pub max_operations: u64,
    #[serde(rename = "ruleset_deadline_ms")]
    pub deadline_ms: u64,
}

impl Default for RulesetSettings {
    fn default() -> Self {
        RulesetSettings { review: super::ruleset::Review::Ops, max_operations: 50_000, deadline_ms: 5 }
    }
}

impl App {
    /// What an operator should hear about this app's push URLs: each one its calls need that is
    /// empty. Its pushes are not dropped: they wait in the outbox, retried, until a URL is set.
    pub fn push_warnings(&self) -> Vec<String> {
        let wanted = [("call_event_url", &self.call_event_url, "call events"), ("cdr_url", &self.cdr_url, "CDRs")];
        wanted
            .iter()
            .filter(|(_, url, _)| url.is_empty())
            .map(|(key, _, what)| {
                format!("{key} is empty: this app's {what} are kept and retried, not delivered, until it is set")
            })
            .collect()
    }
}

/// App keys become store keys and appear in URLs: keep them to a safe alphabet.
pub fn check_app_key(app_key: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if app_key.is_empty() || app_key.len() > 128 || !app_key.chars().all(ok_char) {
        return Err(format!("{app_key:?} must be 1 to 128 characters of letters, digits, '-', '_' or '.'"));
    }
    if app_key.bytes().all(|b| b == b'.') {
        return Err(format!("{app_key:?} is not a name: an app key names paths and files"));
    }
    Ok(())
}

/// The app settings that name a tone (the app's own recording notice, close hint and extension
/// prompt). A call plays one only once its tone is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppToneSetting {
    RecordHint,
    CloseHint,
    ExtensionPrompt,
}

impl AppToneSetting {
    pub const ALL: [AppToneSetting; 3] =
        [AppToneSetting::RecordHint, AppToneSetting::CloseHint, AppToneSetting::ExtensionPrompt];

    /// The setting's name in `privnum.toml` and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            AppToneSetting::RecordHint => "record_hint_tone",
            AppToneSetting::CloseHint => "close_hint_tone",
            AppToneSetting::ExtensionPrompt => "extension_prompt",
        }
    }

    pub fn of(self, app: &App) -> &str {
        match self {
            AppToneSetting::RecordHint => &app.record_hint_tone,
            AppToneSetting::CloseHint => &app.close_hint_tone,
            AppToneSetting::ExtensionPrompt => &app.extension_prompt,
        }
    }

    pub fn of_mut(self, app: &mut App) -> &mut String {
        match self {
            AppToneSetting::RecordHint => &mut app.record_hint_tone,
            AppToneSetting::CloseHint => &mut app.close_hint_tone,
            AppToneSetting::ExtensionPrompt => &mut app.extension_prompt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_app_key;

    #[test]
    fn an_app_without_push_urls_is_warned_about() {
        let mut app = super::tests_support::app("a", super::Mode::Axb);
        let warnings = app.push_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("call_event_url is empty") && warnings[1].starts_with("cdr_url is empty"));
        app.call_event_url = "http://customer/events".into();
        app.cdr_url = "http://customer/cdr".into();
        assert!(app.push_warnings().is_empty());
    }

    #[test]
    fn app_keys_are_names_that_cannot_walk_paths() {
        assert!(check_app_key("ride.hailing-1_cn").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a\u{1b}[31m"] {
            assert!(check_app_key(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::{App, Mode, RulesetSettings};

    /// An app with recording on and every other setting empty (four-digit extensions).
    pub(crate) fn app(app_key: &str, mode: Mode) -> App {
        App {
            app_key: app_key.to_owned(),
            app_secret: String::new(),
            mode,
            scenario: String::new(),
            recording: true,
            record_hint_tone: String::new(),
            close_hint_tone: String::new(),
            extension_digits: 4,
            extension_prompt: String::new(),
            sms: false,
            sms_scenario: String::new(),
            call_event_url: String::new(),
            cdr_url: String::new(),
            sms_url: String::new(),
            sms_control_url: String::new(),
            callin_url: String::new(),
            memory_callback_minutes: 0,
            ruleset: RulesetSettings::default(),
        }
    }
}
