//! One delivery: read the pushes' bodies, POST them signed, and settle the outcome in the outbox
//! (delivered, retried later, or buried).

use std::time::Duration;

use crate::store::outbox::{Lane, Push};

use super::Pusher;

/// How long one POST may take. A customer that hangs holds up the call it reports on this long
/// per try, and one of its app's requests in flight.
pub(super) const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one request, as the app's dispatcher needs to know it.
#[derive(Debug)]
pub(super) struct Settled {
    pub lane: Lane,
    /// The pushes it carried, by id.
    pub ids: Vec<u64>,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub(super) enum Outcome {
    /// Acknowledged (2xx) and removed from the outbox, or no longer there.
    Delivered,
    /// Not acknowledged; each push (by id) is due again at the instant given (ms) after its
    /// `attempts`-th failure. Those not listed were buried. `receiver` says whether the failure
    /// was the receiver's (an error, a timeout, a 5xx, 408 or 429), which counts towards the
    /// app's back-off; a refusal (another 4xx) does not.
    Failed { again: Vec<(u64, i64, u32)>, receiver: bool },
    /// The outbox could not be read or changed: the pushes stay, to be tried after a pause.
    Store,
}

/// Why a push was not acknowledged.
struct Failure {
    reason: String,
    /// Whether the same push may succeed later.
    retry: bool,
}

impl Pusher {
    /// Delivers the pushes `ids` of one lane in one request (one event, or a CDR batch), and
    /// settles the outcome before answering, so the dispatcher's next look at the outbox agrees.
    ///
    /// An `early` request is a back-off probe sent before its pushes' retry time: if it fails,
    /// the pushes keep their count of attempts and their retry time.
    pub(super) async fn deliver(&self, app_key: &str, lane: Lane, ids: Vec<u64>, early: bool) -> Settled {
        let batch = match self.read_batch(app_key, lane, ids.clone()).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::error!(app_key, lane = lane.name(), error = %err, "cannot read pushes from the outbox; will retry");
                return Settled { lane, ids, outcome: Outcome::Store };
            }
        };
        if batch.is_empty() {
            return Settled { lane, ids, outcome: Outcome::Delivered };
        }
        let now = self.now_ms();
        let sent = self.post(app_key, lane, &batch).await;
        if early {
            // A refusal is settled as any other; a receiver still down leaves the pushes as they were.
            if let Some(failure) = sent.as_ref().err().filter(|failure| failure.retry) {
                let again = batch.iter().map(|push| (push.id, push.next_attempt_at_ms, push.attempts)).collect();
                tracing::debug!(app_key, lane = lane.name(), "probe failed: {}", failure.reason);
                return Settled { lane, ids, outcome: Outcome::Failed { again, receiver: failure.retry } };
            }
        }
        let outcome = match self.settle(batch, sent, now).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(app_key, lane = lane.name(), error = %err, "cannot settle pushes in the outbox; will retry");
                Outcome::Store
            }
        };
        Settled { lane, ids, outcome }
    }

    /// The pushes' records, on a blocking thread when their bodies are on disk.
    async fn read_batch(&self, app_key: &str, lane: Lane, ids: Vec<u64>) -> Result<Vec<Push>, crate::store::Error> {
        if self.calls.lane_in_memory(app_key, lane, &ids) {
            return self.calls.lane_pushes(app_key, lane, &ids);
        }
        let (calls, app_key) = (self.calls.clone(), app_key.to_owned());
        tokio::task::spawn_blocking(move || calls.lane_pushes(&app_key, lane, &ids))
            .await
            .map_err(|err| crate::store::Error::Transaction(format!("reading pushes: {err}")))?
    }

    /// POSTs one batch; `Err` says why it was not acknowledged and whether trying again can help.
    async fn post(&self, app_key: &str, lane: Lane, batch: &[Push]) -> Result<(), Failure> {
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
        let response = self
            .signed_post(app_key, &app.app_secret, url, body)
            .send()
            .await
            .map_err(|err| retry(format!("POST {url}: {err}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // A 4xx other than a timeout or rate limit refuses this payload: sending the same bytes
        // again cannot help, and the call's later pushes should not wait hours for it.
        let retryable = !status.is_client_error() || matches!(status.as_u16(), 408 | 429);
        Err(Failure { reason: format!("POST {url}: HTTP {status}"), retry: retryable })
    }

    /// Removes an acknowledged batch; otherwise schedules each push's next try by its own count
    /// of attempts, and buries those whose retries are used up (or that the customer refused).
    async fn settle(
        &self,
        batch: Vec<Push>,
        sent: Result<(), Failure>,
        now: i64,
    ) -> Result<Outcome, crate::store::Error> {
        let lane = batch.first().map_or(Lane::Events, |push| push.lane);
        let stats = batch.first().map(|push| self.lane_stats(&push.app_key, lane));
        let failure = match sent {
            Ok(()) => {
                self.calls.delivered(&batch).await?;
                if let Some(stats) = stats {
                    stats.count_delivered(batch.len());
                }
                return Ok(Outcome::Delivered);
            }
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
            tracing::warn!(app_key = %push.app_key, lane = push.lane.name(), call = %push.call, attempts = push.attempts, "push failed, will retry: {}", failure.reason);
            self.calls.retry_later(&again).await?;
            if let Some(stats) = &stats {
                stats.count_retried(again.len());
            }
        }
        if let Some(push) = buried.first() {
            tracing::error!(app_key = %push.app_key, lane = push.lane.name(), count = buried.len(), "push failed for the last time; kept for redelivery: {}", failure.reason);
            self.calls.bury(&buried).await?;
            if let Some(stats) = &stats {
                stats.count_buried(buried.len());
            }
        }
        let again = again.iter().map(|push| (push.id, push.next_attempt_at_ms, push.attempts)).collect();
        Ok(Outcome::Failed { again, receiver: failure.retry })
    }
}

/// One POST's body for a batch of CDRs: their stored bytes in a `feeLst`, in lane order.
pub(super) fn merged_cdrs(batch: &[Push]) -> String {
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

#[cfg(test)]
mod tests {
    use super::merged_cdrs;
    use crate::store::outbox::{Lane, Push};

    fn cdr(body: serde_json::Value) -> Push {
        Push {
            id: 1,
            app_key: "app".into(),
            call: "call".into(),
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
