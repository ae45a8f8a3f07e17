//! Delivering pushes to customers: call events and merged CDRs, signed with the app's key, retried
//! on `push_retry_schedule`, and kept in the store's outbox until acknowledged (any 2xx).
//!
//! One task per lane (app and kind) delivers that lane in order; a lane waits while its oldest
//! push waits for a retry, so one call's events never arrive out of order, and a slow or dead
//! customer holds up only its own lanes. Routing never waits for a push: it only writes to the
//! outbox and wakes the lane.
//!
//! A push's body is sent as the bytes stored with it: an event as it is, CDRs spliced into one
//! `{"eventType":"fee","feeLst":[…]}` without decoding them (README, "What the customer
//! receives").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::auth::{self, Scheme};
use crate::config::Config;
use crate::store::outbox::{Lane, Push};
use crate::store::{Apps, Calls};

/// How long one POST may take. A customer that hangs holds up its own lane this long per try.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// After a storage error in a lane, wait this long before looking again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// On a graceful stop, a push being sent gets this long to be answered and settled, so that a
/// restart does not send it again. (A crash still can: delivery is at least once.)
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A lane's wake-up and the task that delivers it.
type LaneTask = (Arc<Notify>, tokio::task::JoinHandle<()>);

pub struct Pusher {
    /// The outbox, read and settled here.
    calls: Calls,
    /// Where each app's pushes go, and the secret that signs them.
    apps: Apps,
    config: Arc<Config>,
    client: reqwest::Client,
    /// Each lane's wake-up and task; a shutdown waits for the tasks to let go of the store.
    lanes: Mutex<HashMap<(String, Lane), LaneTask>>,
    stop: watch::Receiver<bool>,
    /// Where lane tasks run: `wake` may be called from the store's committer thread, outside
    /// the runtime.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

impl Pusher {
    /// Must be called inside the tokio runtime that will run the lanes.
    pub fn new(calls: Calls, apps: Apps, config: Arc<Config>, stop: watch::Receiver<bool>) -> Arc<Self> {
        let client = reqwest::Client::builder().timeout(PUSH_TIMEOUT).no_proxy().build().unwrap_or_default();
        let runtime = tokio::runtime::Handle::current();
        Arc::new(Pusher { calls, apps, config, client, lanes: Mutex::default(), stop, runtime })
    }

    /// The HTTP client pushes use (keep-alive per customer host), for other calls to customers'
    /// and switches too.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Pushes are scheduled in milliseconds of real time (not the injectable clock), so retries
    /// and CDR merging behave the same whatever a test does with binding expiry.
    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Resumes every lane with pushes waiting (after a restart).
    pub fn resume(self: &Arc<Self>) -> Result<(), crate::store::Error> {
        for (app_key, lane) in self.calls.waiting_lanes()? {
            self.wake(&app_key, lane);
        }
        Ok(())
    }

    /// Tells a lane it has new pushes, starting its task the first time (or again, if it ended).
    /// After the stop, it starts nothing: the pushes wait in the outbox for the next start, and no
    /// new task holds the store while it closes.
    pub fn wake(self: &Arc<Self>, app_key: &str, lane: Lane) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Under the lock: `stopped` takes the lanes after the stop is signalled, so a lane started
        // here is either among those it waits for, or not started at all.
        if *self.stop.borrow() {
            return;
        }
        let key = (app_key.to_owned(), lane);
        if let Some((notify, task)) = lanes.get(&key) {
            if !task.is_finished() {
                notify.notify_one();
                return;
            }
        }
        let notify = Arc::new(Notify::new());
        let pusher = self.clone();
        let (app, wake) = (app_key.to_owned(), notify.clone());
        let task = self.runtime.spawn(async move { pusher.run_lane(app, lane, wake).await });
        lanes.insert(key, (notify, task));
    }

    /// Waits until every lane has stopped (after `stop` changed). A push being sent gets
    /// `STOP_GRACE` (2 s) to finish; if it does not, it stays in the outbox and is sent again after
    /// the restart.
    pub async fn stopped(&self) {
        let lanes = std::mem::take(&mut *self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for (_, (_, task)) in lanes {
            let _ = task.await;
        }
    }

    async fn run_lane(self: Arc<Self>, app_key: String, lane: Lane, notify: Arc<Notify>) {
        let mut stop = self.stop.clone();
        loop {
            if *stop.borrow() {
                return;
            }
            let step = self.step(&app_key, lane);
            tokio::pin!(step);
            let step = tokio::select! {
                step = &mut step => step,
                _ = stop.changed() => {
                    let _ = tokio::time::timeout(STOP_GRACE, step).await;
                    return;
                }
            };
            let wait = match step {
                Ok(Step::Again) => continue,
                Ok(Step::Idle) => None,
                Ok(Step::WaitUntil(at_ms)) => {
                    Some(Duration::from_millis(u64::try_from(at_ms - self.now_ms()).unwrap_or(0)))
                }
                Err(err) => {
                    // A storage fault was logged once when it began.
                    if !matches!(err, crate::store::Error::Unavailable(_)) {
                        tracing::error!(app_key, lane = lane.name(), error = %err, "push lane cannot read the outbox; will retry");
                    }
                    Some(STORE_RETRY)
                }
            };
            let sleep = async {
                match wait {
                    Some(duration) => tokio::time::sleep(duration).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = notify.notified() => {}
                _ = sleep => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One look at the lane: deliver what is due, or say how long to wait.
    async fn step(&self, app_key: &str, lane: Lane) -> Result<Step, crate::store::Error> {
        // While the store is faulted a delivered push could not be settled, and would be sent
        // again every retry: wait for the recovery instead.
        if let Some(fault) = self.calls.fault() {
            return Err(crate::store::Error::Unavailable(fault));
        }
        let max = if lane == Lane::Cdrs { self.config.cdr_batch_max } else { 1 };
        // The oldest push alone decides whether to send now; the rest are read only to send them
        // (a CDR lane is woken by every new CDR while it merges, and must not decode the batch
        // each time).
        let Some(first) = self.calls.lane_head(app_key, lane, 1)?.pop() else { return Ok(Step::Idle) };
        let now = self.now_ms();
        if first.next_attempt_at_ms > now {
            return Ok(Step::WaitUntil(first.next_attempt_at_ms));
        }
        let flush_ms = i64::try_from(self.config.cdr_flush_ms).unwrap_or(i64::MAX);
        let merge_until = first.created_at_ms.saturating_add(flush_ms);
        if lane == Lane::Cdrs
            && first.attempts == 0
            && now < merge_until
            && self.calls.lane_len(app_key, lane, max) < max
        {
            // Merge: wait for more CDRs, at most cdr_flush_ms after the oldest.
            return Ok(Step::WaitUntil(merge_until));
        }
        let heads = if max == 1 { vec![first] } else { self.calls.lane_head(app_key, lane, max)? };
        let batch: Vec<Push> = heads.into_iter().filter(|push| push.next_attempt_at_ms <= now).collect();
        let outcome = self.send(app_key, lane, &batch).await;
        self.settle(batch, outcome, now).await?;
        Ok(Step::Again)
    }

    /// POSTs one batch; `Err` says why it was not acknowledged and whether trying again can help.
    async fn send(&self, app_key: &str, lane: Lane, batch: &[Push]) -> Result<(), Failure> {
        let retry = |reason: String| Failure { reason, retry: true };
        let app = self.apps.get(app_key).map_err(|err| retry(err.to_string()))?;
        let app = app.ok_or_else(|| Failure { reason: "the app no longer exists".into(), retry: false })?;
        let url = match lane {
            Lane::Events => &app.call_event_url,
            Lane::Cdrs => &app.cdr_url,
        };
        if url.is_empty() {
            let kind = if lane == Lane::Events { "call_event" } else { "cdr" };
            return Err(retry(format!("app {app_key} has no {kind} URL")));
        }
        let body = match lane {
            Lane::Events => batch.first().map_or_else(|| "null".to_owned(), |push| push.body.get().to_owned()),
            Lane::Cdrs => merged_cdrs(batch),
        };
        let signed = auth::sign(Scheme::Aksk, app_key, &app.app_secret, &auth::new_nonce(), chrono::Utc::now());
        let response = self
            .client
            .post(url)
            .header("Authorization", signed.authorization)
            .header(signed.token_name, signed.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| retry(format!("POST {url}: {err}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // A 4xx other than a timeout or rate limit refuses this payload: sending the same bytes
        // again cannot help, and the lane behind it should not wait hours for it.
        let retryable = !status.is_client_error() || matches!(status.as_u16(), 408 | 429);
        Err(Failure { reason: format!("POST {url}: HTTP {status}"), retry: retryable })
    }

    /// Removes an acknowledged batch; otherwise schedules each push's next try by its own count
    /// of attempts, and buries those whose retries are used up (or that the customer refused).
    async fn settle(
        &self,
        batch: Vec<Push>,
        outcome: Result<(), Failure>,
        now: i64,
    ) -> Result<(), crate::store::Error> {
        let failure = match outcome {
            Ok(()) => return self.calls.delivered(&batch).await,
            Err(failure) => failure,
        };
        let schedule = &self.config.push_retry_schedule;
        let (mut again, mut buried) = (Vec::new(), Vec::new());
        for mut push in batch {
            push.attempts += 1;
            push.last_error = Some(failure.reason.clone());
            let delay = schedule.get(push.attempts as usize - 1).filter(|_| failure.retry);
            match delay {
                Some(delay) => {
                    push.next_attempt_at_ms =
                        now.saturating_add(i64::try_from(delay.0.as_millis()).unwrap_or(i64::MAX));
                    again.push(push);
                }
                None => buried.push(push),
            }
        }
        if let Some(push) = again.first() {
            tracing::warn!(app_key = %push.app_key, lane = push.lane.name(), attempts = push.attempts, "push failed, will retry: {}", failure.reason);
            self.calls.retry_later(&again).await?;
        }
        if let Some(push) = buried.first() {
            tracing::error!(app_key = %push.app_key, lane = push.lane.name(), count = buried.len(), "push failed for the last time; kept for redelivery: {}", failure.reason);
            self.calls.bury(&buried).await?;
        }
        Ok(())
    }
}

/// One POST's body for a batch of CDRs: their stored bytes in a `feeLst`, in lane order.
fn merged_cdrs(batch: &[Push]) -> String {
    const OPEN: &str = r#"{"eventType":"fee","feeLst":["#;
    let items: usize = batch.iter().map(|push| push.body.get().len() + 1).sum();
    let mut body = String::with_capacity(OPEN.len() + items + 2);
    body.push_str(OPEN);
    for (index, push) in batch.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(push.body.get());
    }
    body.push_str("]}");
    body
}

/// Why a push was not acknowledged.
struct Failure {
    reason: String,
    /// Whether the same push may succeed later.
    retry: bool,
}

enum Step {
    /// Something was sent (or settled): look again at once.
    Again,
    /// Nothing waits.
    Idle,
    /// The oldest push is due at this instant (ms).
    WaitUntil(i64),
}

#[cfg(test)]
mod tests {
    use super::merged_cdrs;
    use crate::store::outbox::{Lane, Push};

    fn cdr(body: serde_json::Value) -> Push {
        Push {
            id: 1,
            app_key: "app".into(),
            lane: Lane::Cdrs,
            body: serde_json::value::to_raw_value(&body).unwrap(),
            attempts: 0,
            created_at_ms: 0,
            next_attempt_at_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn merged_cdrs_are_the_fee_list_a_map_of_them_would_encode() {
        let items = [serde_json::json!({"icid": "a", "direction": 1}), serde_json::json!({"icid": "b"})];
        let batch: Vec<Push> = items.iter().cloned().map(cdr).collect();
        let expected = serde_json::json!({"eventType": "fee", "feeLst": items}).to_string();
        assert_eq!(merged_cdrs(&batch), expected);
        assert_eq!(
            merged_cdrs(&batch[..1]),
            serde_json::json!({"eventType": "fee", "feeLst": [&items[0]]}).to_string()
        );
    }
}
