//! A binding of any mode, as a call sees it: what the session, events and CDRs need from it.

use std::sync::Arc;

use super::{App, AxBinding, AxbBinding, AxeBinding, Rejection};

/// What a binding of any mode says about recording, and the rules every mode shares about it.
pub trait Recorded {
    fn subscription_id(&self) -> &str;
    /// `recordFlag`.
    fn records(&self) -> bool;
    fn record_hint_tone(&self) -> Option<&str>;

    /// The rules that depend on the app rather than on the request alone.
    fn check_against(&self, app: &App) -> Result<(), Rejection> {
        if self.records() && !app.recording {
            return Err(Rejection::RecordingDisabled { app_key: app.app_key.clone() });
        }
        Ok(())
    }

    /// Recording with no notice at all: the binding names no recording tone and the app has no
    /// notice it can play (none, or one not approved). Accepted (real clients omit the tone) but
    /// a compliance risk worth counting.
    fn records_without_notice(&self, app_has_notice: bool) -> bool {
        self.records() && self.record_hint_tone().is_none() && !app_has_notice
    }
}

macro_rules! recorded {
    ($($binding:ty),*) => {$(
        impl Recorded for $binding {
            fn subscription_id(&self) -> &str {
                &self.subscription_id
            }
            fn records(&self) -> bool {
                self.record
            }
            fn record_hint_tone(&self) -> Option<&str> {
                self.record_hint_tone.as_deref()
            }
        }
    )*};
}

recorded!(AxbBinding, AxBinding, AxeBinding);

/// The binding a call was decided under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Axb(Arc<AxbBinding>),
    Ax(Arc<AxBinding>),
    Axe(Arc<AxeBinding>),
}

impl Binding {
    pub fn subscription_id(&self) -> &str {
        match self {
            Binding::Axb(b) => &b.subscription_id,
            Binding::Ax(b) => &b.subscription_id,
            Binding::Axe(b) => &b.subscription_id,
        }
    }

    /// The number whose calls are "outbound" in the CDR's `direction` (1): AXB's A (`callerNum`),
    /// AX's A (`origNum`), AXE's A (`bindNum`).
    pub fn a_number(&self) -> &str {
        match self {
            Binding::Axb(b) => &b.caller_num,
            Binding::Ax(b) => &b.orig_num,
            Binding::Axe(b) => &b.bind_num,
        }
    }

    pub fn user_data(&self) -> Option<&str> {
        match self {
            Binding::Axb(b) => b.user_data.as_deref(),
            Binding::Ax(b) => b.user_data.as_deref(),
            Binding::Axe(b) => b.user_data.as_deref(),
        }
    }
}
