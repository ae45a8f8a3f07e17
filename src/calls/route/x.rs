//! X-mode routing: there is no stored binding; the customer's server decides each call in its
//! reply to a Block `callin` push, and `modes/x.rhai` makes the decision from that reply, or from
//! why there was none.
//!
//! Invariants: the only party an X-mode call may reach is the `calleeNum` of a valid reply; it
//! records only when the reply asks and the app records; it lasts at most the reply's
//! `maxDuration`; every tone is an approved tone of the app (a reply naming another is a failure,
//! kind `tone`); the display is the X (the host sets it, as in every mode).

use std::sync::Arc;
use std::time::Duration;

use super::{ruleset, CallIn, ModeRoute, Prepared};
use crate::calls::report;
use crate::domain::{Allowance, App, Mode, XFailure, XReply};
use crate::push::Pusher;
use crate::script::api::Call;
use crate::script::ScriptHost;
use crate::store::{self, Store};
use crate::telemetry::{BlockCallin, Metrics};

/// The script and handler that decide an X-mode callin.
const X_SCRIPT: (&str, &str) = ("modes/x.rhai", "on_callin");

pub(crate) struct XRoute;

impl ModeRoute for XRoute {
    fn mode(&self) -> Mode {
        Mode::X
    }

    /// Nothing to look up: the customer is asked next ([`ask`]).
    fn callin(&self, _store: &Store, call: Call, _app: &App, _now: i64) -> Result<Prepared, store::Error> {
        Ok(Prepared { script: X_SCRIPT, call, allowance: Allowance::default(), user_data: None, ruleset_version: None })
    }

    fn asks_customer(&self) -> bool {
        true
    }
}

/// The customer's server, as a callin asks it.
#[derive(Clone, Copy)]
pub struct Customer<'a> {
    pub pusher: &'a Arc<Pusher>,
    /// `x_callin_timeout_ms`.
    pub timeout: Duration,
}

/// Asks the app's rule set (`on_x_callin`), then, when it leaves the call to the customer, sends
/// the Block `callin`, and when that gets no answer asks the rule set again (`on_x_fallback`);
/// hands the script the reply, checked, or the failure, and sets what the decision may do from
/// the reply.
pub(super) async fn ask(
    (store, scripts): (&Store, &Arc<ScriptHost>),
    customer: Customer<'_>,
    metrics: &Metrics,
    app: &Arc<App>,
    callin: &CallIn,
    prepared: &mut Prepared,
    now: i64,
) {
    let decided = |(reply, version)| (reply, Some(version));
    let mut reply = match ruleset::x_reply(store, scripts, app, callin, now, None).await {
        Some(answer) => Ok(decided(answer)),
        None => push(store, customer, metrics, app, callin).await.map(|reply| (reply, None)),
    };
    if let Err(failure) = &reply {
        if failure.no_answer() {
            if let Some(answer) = ruleset::x_reply(store, scripts, app, callin, now, Some(failure)).await {
                reply = Ok(decided(answer));
            }
        }
    }
    let reply = reply.map(|(reply, version)| {
        prepared.ruleset_version = version;
        reply
    });
    match reply {
        Ok(reply) => {
            if let XReply::Connect(connect) = &reply {
                prepared.allowance = Allowance {
                    callee: Some(connect.callee.clone()),
                    may_record: connect.record && app.recording,
                    max_duration: (connect.max_duration > 0).then_some(connect.max_duration),
                    collect_digits: None,
                };
            }
            prepared.user_data = reply.user_data().map(str::to_owned);
            prepared.call.reply = Some(Arc::new(reply));
        }
        Err(failure) => prepared.call.failure = Some(Arc::new(failure)),
    }
}

/// The Block `callin` push and its reply, read and checked (its tones approved tones of the app).
async fn push(
    store: &Store,
    customer: Customer<'_>,
    metrics: &Metrics,
    app: &Arc<App>,
    callin: &CallIn,
) -> Result<XReply, XFailure> {
    let body = report::encode(&report::block_callin_event(callin));
    let started = std::time::Instant::now();
    let reply = match customer.pusher.block(app, body, customer.timeout).await {
        Ok(bytes) => XReply::parse(&bytes, &callin.called).map_err(XFailure::Invalid).and_then(|reply| {
            let unapproved = reply
                .tones()
                .into_iter()
                .find(|(_, tone)| !store.tones().approved(&app.app_key, tone))
                .map(|(field, tone)| XFailure::Tone { field, tone: tone.to_owned() });
            unapproved.map_or(Ok(reply), Err)
        }),
        Err(failure) => Err(failure),
    };
    BlockCallin { app_key: &app.app_key, elapsed: started.elapsed(), outcome: reply.as_ref().err() }.emit(metrics);
    reply
}
