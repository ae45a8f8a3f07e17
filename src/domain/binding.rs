//! A binding of any mode, as a call sees it: what the session, events and CDRs need from it.

use std::sync::Arc;

use super::{AxBinding, AxbBinding, AxeBinding};

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
