//! The store's handle on bindings of every mode.
//!
//! Each mode keeps its bindings, indexes and staging in a file of its own (`axb.rs`, `ax.rs`,
//! `axe.rs`), all as methods of [`Bindings`]. Writes (bind, modify, unbind, expiry sweeps) take
//! the writer lock, because choosing a free X needs range scans that sled transactions cannot
//! see, and block the thread: call them off the async workers. The call path's lookups
//! (`axb_for_call`, `ax_for_call`, `axe_for_extension`, `axe_for_a`, `axe_callback`) are point
//! reads that take no lock.

use std::sync::Arc;

use super::{Error, Shared};

/// Bindings of every mode: provisioning, the call path's lookups, expiry.
#[derive(Debug, Clone)]
pub struct Bindings {
    pub(super) shared: Arc<Shared>,
}

impl Bindings {
    /// How many bindings X holds, of whatever mode (expired ones not yet purged included).
    pub fn pairs_on(&self, x_number: &str) -> Result<u32, Error> {
        self.shared.pairs_on(x_number)
    }
}
