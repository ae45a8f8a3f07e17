//! One app's dispatcher: which of its waiting pushes go out now.
//!
//! Each lane (events, CDRs) keeps a window: the oldest waiting pushes read from the outbox, as
//! headers (the bodies are read when a push is sent), at most `push_window` of them. Within the
//! window, each call's pushes form a queue; only a queue's head may be in flight, and it stays the
//! head until it is acknowledged or buried, so one call's pushes arrive in order. Heads of
//! different calls go out together, up to the app's `push_max_in_flight` requests (events and CDR
//! batches together). A push waiting for its retry holds up only its own call's queue.
//!
//! The window is refilled from the start of the lane (passing over what it holds), so a push
//! committed after a later one of another call is still found, and a call's pushes, committed in
//! order, are read in order.
//!
//! A CDR goes out only once its call has no event waiting: only after the events window was read
//! whole (not cut off at `push_window`) since the CDR was read, and holds none of the call's.
//!
//! Back-off: after [`BACKOFF_AFTER`] failures of a lane's receiver in a row (errors, timeouts,
//! 5xx, 408, 429; no success between them), the lane sends one probe at a time, the first after
//! [`PROBE_MIN`], doubling up to [`PROBE_MAX`] while the probes fail. The first probe acknowledged
//! ends the back-off: the lane is back to full parallelism at once, and the pushes that failed
//! during the outage are due at once instead of at their retry time. When no push is due, the
//! probe is the oldest that failed during the outage, sent before its retry time; a probe sent
//! early that fails does not use up one of its retries (the receiver is down, not the push), so
//! a long outage buries nothing by probing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use super::send::{Outcome, Settled};
use super::{LaneStats, Pusher, STOP_GRACE, STORE_RETRY};
use crate::store::outbox::{Lane, Waiting};

/// Failures of a receiver in a row that start the back-off.
pub(super) const BACKOFF_AFTER: u32 = 8;
/// The first probe's delay, in ms…
pub(super) const PROBE_MIN: i64 = 250;
/// …doubling up to this.
pub(super) const PROBE_MAX: i64 = 5_000;

/// The most pushes one spill step moves (`spill`)…
const SPILL_STEP: usize = 16_384;
/// …and the most steps one look takes.
const SPILL_STEPS: usize = 4;

/// How often the backlog is looked at for the log's warnings and the spill.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    call: Arc<str>,
    attempts: u32,
    created_at_ms: i64,
    next_attempt_at_ms: i64,
    in_flight: bool,
    /// The dispatcher's round in which it was read (CDRs: see the module's comment).
    read_round: u64,
    /// When it last failed because its receiver did (so it is due at once after a recovery).
    failed_at_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Backoff {
    /// Receiver failures in a row.
    failures: u32,
    /// While backing off: the delay before the next probe, the instant it may go, whether one is
    /// in flight, and when the outage began.
    delay_ms: i64,
    probe_at_ms: i64,
    probing: bool,
    since_ms: i64,
}

impl Backoff {
    fn active(&self) -> bool {
        self.failures >= BACKOFF_AFTER
    }
}

struct Window {
    lane: Lane,
    /// The most entries it holds (`push_window`).
    limit: usize,
    entries: BTreeMap<u64, Entry>,
    /// Each call's waiting pushes in the window, oldest first; only the first may be sent.
    calls: HashMap<Arc<str>, VecDeque<u64>>,
    /// Calls' first pushes that are due and not in flight, oldest first…
    ready: BTreeSet<u64>,
    /// …and those due later, by when.
    delayed: BTreeSet<(i64, u64)>,
    /// The window is full and the lane holds more than it: arrivals are left to the next
    /// refill, which reads the lane from its start.
    cut_off: bool,
    /// The last round that ended with the window holding every waiting push of the lane
    /// (events; see the module's comment).
    whole_round: u64,
    backoff: Backoff,
    stats: Arc<LaneStats>,
}

impl Window {
    fn new(lane: Lane, limit: usize, stats: Arc<LaneStats>) -> Window {
        Window {
            lane,
            limit,
            entries: BTreeMap::new(),
            calls: HashMap::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            cut_off: false,
            whole_round: 0,
            backoff: Backoff::default(),
            stats,
        }
    }

    fn full(&self) -> bool {
        self.entries.len() >= self.limit
    }

    /// Free places.
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.entries.len())
    }

    /// Whether it was cut off and has room enough to be refilled (an eighth of its places).
    fn wants_refill(&self) -> bool {
        self.cut_off && self.room() >= (self.limit / 8).max(1)
    }

    /// Takes a waiting push in; `false` if the window is full (the lane is then cut off).
    fn add(&mut self, waiting: Waiting, round: u64) -> bool {
        if self.entries.contains_key(&waiting.id) {
            return true;
        }
        if self.full() {
            self.cut_off = true;
            return false;
        }
        let call: Arc<str> = match self.calls.get_key_value(waiting.call.as_str()) {
            Some((call, _)) => call.clone(),
            None => Arc::from(waiting.call.as_str()),
        };
        let queue = self.calls.entry(call.clone()).or_default();
        queue.push_back(waiting.id);
        let head = queue.len() == 1;
        self.entries.insert(
            waiting.id,
            Entry {
                call,
                attempts: waiting.attempts,
                created_at_ms: waiting.created_at_ms,
                next_attempt_at_ms: waiting.next_attempt_at_ms,
                in_flight: false,
                read_round: round,
                failed_at_ms: None,
            },
        );
        if head {
            self.delayed.insert((waiting.next_attempt_at_ms, waiting.id));
        }
        true
    }

    /// A push left the outbox (acknowledged or buried): its call's next becomes its head.
    fn remove(&mut self, id: u64) {
        let Some(entry) = self.entries.remove(&id) else { return };
        self.ready.remove(&id);
        self.delayed.remove(&(entry.next_attempt_at_ms, id));
        let Some(queue) = self.calls.get_mut(&entry.call) else { return };
        let was_head = queue.front() == Some(&id);
        queue.retain(|queued| *queued != id);
        match queue.front().copied() {
            None => {
                self.calls.remove(&entry.call);
            }
            Some(next) if was_head => {
                if let Some(next_entry) = self.entries.get(&next) {
                    if !next_entry.in_flight {
                        self.delayed.insert((next_entry.next_attempt_at_ms, next));
                    }
                }
            }
            Some(_) => {}
        }
    }

    /// Marks a head as being sent.
    fn take(&mut self, id: u64) {
        self.ready.remove(&id);
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.in_flight = true;
        }
    }

    /// A head that was sent stays its call's head, due again at `next_at`.
    fn again(&mut self, id: u64, next_at: i64, attempts: Option<u32>, failed_at: Option<i64>) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.in_flight = false;
        entry.next_attempt_at_ms = next_at;
        if let Some(attempts) = attempts {
            entry.attempts = attempts;
            entry.failed_at_ms = failed_at;
        }
        self.delayed.insert((next_at, id));
    }

    /// While backing off with no push due: the oldest head that failed during the outage, to
    /// probe with before its retry time (such a probe does not use up one of its retries).
    fn early_probe(&self) -> Option<u64> {
        if !self.backoff.active() {
            return None;
        }
        let since = self.backoff.since_ms;
        self.delayed
            .iter()
            .filter(|(_, id)| self.entries.get(id).and_then(|e| e.failed_at_ms).is_some_and(|at| at >= since))
            .map(|(_, id)| *id)
            .min()
    }

    /// Marks a delayed head as being sent (a probe).
    fn take_early(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            self.delayed.remove(&(entry.next_attempt_at_ms, id));
            entry.in_flight = true;
        }
    }

    /// Moves the heads due by `now` to `ready`; returns when the next one is due.
    fn promote(&mut self, now: i64) -> Option<i64> {
        while let Some(&(at, id)) = self.delayed.first() {
            if at > now {
                return Some(at);
            }
            self.delayed.pop_first();
            self.ready.insert(id);
        }
        None
    }

    /// How many more requests back-off allows now, and when it allows the next (ms).
    fn allowance(&self, now: i64) -> (usize, Option<i64>) {
        if !self.backoff.active() {
            return (usize::MAX, None);
        }
        if self.backoff.probing {
            return (0, None);
        }
        if now < self.backoff.probe_at_ms {
            return (0, Some(self.backoff.probe_at_ms));
        }
        (1, None)
    }

    fn receiver_answered(&mut self, app_key: &str, now: i64) {
        if self.backoff.active() {
            tracing::info!(
                app_key,
                lane = self.lane.name(),
                outage_ms = now - self.backoff.since_ms,
                "the receiver answers again; pushes go out at full speed"
            );
            self.stats.set_backing_off(false);
            // What failed during the outage failed because of it: due again now.
            let since = self.backoff.since_ms;
            let outage: Vec<(i64, u64)> = self
                .delayed
                .iter()
                .filter(|(_, id)| self.entries.get(id).and_then(|e| e.failed_at_ms).is_some_and(|at| at >= since))
                .copied()
                .collect();
            for (at, id) in outage {
                self.delayed.remove(&(at, id));
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.next_attempt_at_ms = now;
                }
                self.delayed.insert((now, id));
            }
        }
        self.backoff = Backoff::default();
    }

    fn receiver_failed(&mut self, app_key: &str, now: i64) {
        let backoff = &mut self.backoff;
        if backoff.failures == 0 {
            backoff.since_ms = now;
        }
        backoff.failures = backoff.failures.saturating_add(1);
        if !backoff.active() {
            return;
        }
        if backoff.failures == BACKOFF_AFTER {
            tracing::warn!(
                app_key,
                lane = self.lane.name(),
                failures = backoff.failures,
                "the receiver fails every push; sending one probe at a time until it answers"
            );
            self.stats.set_backing_off(true);
            backoff.delay_ms = PROBE_MIN;
        } else {
            backoff.delay_ms = (backoff.delay_ms * 2).clamp(PROBE_MIN, PROBE_MAX);
        }
        backoff.probe_at_ms = now.saturating_add(backoff.delay_ms);
    }
}

/// What the dispatcher decided to send in one look: per request, its lane, its pushes, and
/// whether it is a probe sent before its pushes' retry time.
type Requests = Vec<(Lane, Vec<u64>, bool)>;

/// Pushes just committed, told to their app's dispatcher so that it need not read the outbox.
pub(super) type Arrival = (Lane, Waiting);

/// How many ready CDRs one look inspects at most (those waiting for their call's events are
/// passed over).
const CDR_LOOK: usize = 4096;

impl Pusher {
    /// The app's dispatcher task: runs until the stop, then gives the requests in flight
    /// `STOP_GRACE` to be answered and settled.
    pub(super) async fn run_app(
        self: Arc<Self>,
        app_key: String,
        notify: Arc<Notify>,
        mut arrivals: mpsc::UnboundedReceiver<Vec<Arrival>>,
    ) {
        let mut stop = self.stop.clone();
        let limit = self.config.push_window;
        let mut events = Window::new(Lane::Events, limit, self.lane_stats(&app_key, Lane::Events));
        let mut cdrs = Window::new(Lane::Cdrs, limit, self.lane_stats(&app_key, Lane::Cdrs));
        let mut in_flight: JoinSet<Settled> = JoinSet::new();
        let mut round: u64 = 0;
        // Read the lanes from the outbox (at the start, and when woken without the pushes).
        let mut scan = true;
        let mut store_pause_until: i64 = 0;
        let mut watch = tokio::time::interval(WATCH_EVERY);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            if *stop.borrow() {
                break;
            }
            round += 1;
            let now = self.now_ms();
            let wants = |window: &Window| scan || window.wants_refill();
            if (wants(&cdrs) || wants(&events)) && now >= store_pause_until {
                // CDRs first, then events: a CDR read now has its call's events committed before
                // the events' refill below (they are saved together or earlier).
                let (read_cdrs, read_events) = (wants(&cdrs), wants(&events));
                let mut read = Ok(());
                if read_cdrs {
                    read = self.refill(&app_key, &mut cdrs, round).await;
                }
                if read_events && read.is_ok() {
                    read = self.refill(&app_key, &mut events, round).await;
                }
                match read {
                    Ok(()) => scan = false,
                    Err(err) => {
                        // A storage fault was logged once when it began.
                        if !matches!(err, crate::store::Error::Unavailable(_)) {
                            tracing::error!(app_key, error = %err, "cannot read the outbox; will retry");
                        }
                        store_pause_until = now + STORE_RETRY.as_millis() as i64;
                    }
                }
            }
            if !events.cut_off {
                events.whole_round = round;
            }
            // While the store is faulted a delivered push could not be settled, and would be sent
            // again every retry: send nothing until it recovers.
            let (requests, wake_at) = if self.calls.fault().is_some() {
                (Vec::new(), Some(now + STORE_RETRY.as_millis() as i64))
            } else {
                self.choose(&mut events, &mut cdrs, in_flight.len(), now)
            };
            for (lane, ids, early) in requests {
                let pusher = self.clone();
                let app = app_key.clone();
                in_flight.spawn(async move { pusher.deliver(&app, lane, ids, early).await });
            }
            let retry_scan = scan.then_some(store_pause_until);
            let wake_at = match (wake_at, retry_scan) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep(Duration::from_millis(u64::try_from(at - now).unwrap_or(0))).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = notify.notified() => scan = true,
                Some(batch) = arrivals.recv() => {
                    let mut batch = Some(batch);
                    while let Some(items) = batch.take() {
                        for (lane, waiting) in items {
                            let window = if lane == Lane::Events { &mut events } else { &mut cdrs };
                            // A cut-off lane is read from the outbox in order, not from arrivals:
                            // an arrival could be a later push of a call still unread.
                            if window.cut_off || !window.add(waiting, round + 1) {
                                window.cut_off = true;
                            }
                        }
                        batch = arrivals.try_recv().ok();
                    }
                }
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let mut joined = Some(joined);
                    while let Some(result) = joined.take() {
                        match result {
                            Ok(settled) => {
                                let window = if settled.lane == Lane::Events { &mut events } else { &mut cdrs };
                                self.apply(&app_key, window, settled);
                            }
                            Err(err) => tracing::error!(app_key, error = %err, "a push delivery task failed"),
                        }
                        joined = in_flight.try_join_next();
                    }
                }
                _ = sleep => {}
                _ = watch.tick() => {
                    warned = self.watch_backlog(&app_key, [&events, &cdrs], warned);
                    self.spill(&app_key, &events).await;
                    self.spill(&app_key, &cdrs).await;
                }
                _ = stop.changed() => {}
            }
        }
        let grace = async { while in_flight.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, grace).await.is_err() {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
    }

    /// Reads what the window lacks, from the lane's start; spilled pushes are brought back first,
    /// as many as it has room for.
    async fn refill(&self, app_key: &str, window: &mut Window, round: u64) -> Result<(), crate::store::Error> {
        let room = window.room();
        if room > 0 && self.calls.spilled(app_key, window.lane) > 0 {
            self.calls.unspill_lane(app_key, window.lane, room).await?;
        }
        let (found, more) =
            self.calls.lane_waiting(app_key, window.lane, |id| window.entries.contains_key(&id), room)?;
        for waiting in found {
            window.add(waiting, round);
        }
        window.cut_off = more;
        Ok(())
    }

    /// Applies one request's outcome to its window.
    fn apply(&self, app_key: &str, window: &mut Window, settled: Settled) {
        let now = self.now_ms();
        window.stats.in_flight_done(settled.ids.len());
        // While backing off, at most one request (the probe) is in flight: this was it.
        window.backoff.probing = false;
        match settled.outcome {
            Outcome::Delivered => {
                window.receiver_answered(app_key, now);
                settled.ids.iter().for_each(|id| window.remove(*id));
            }
            Outcome::Failed { again, receiver } => {
                if receiver {
                    window.receiver_failed(app_key, now);
                } else {
                    // A refusal is an answer: the receiver is up.
                    window.receiver_answered(app_key, now);
                }
                for id in &settled.ids {
                    match again.iter().find(|(again_id, _, _)| again_id == id) {
                        Some((_, next_at, attempts)) => {
                            window.again(*id, *next_at, Some(*attempts), receiver.then_some(now));
                        }
                        None => window.remove(*id),
                    }
                }
            }
            Outcome::Store => {
                let pause = now + STORE_RETRY.as_millis() as i64;
                for id in &settled.ids {
                    let next_at = window.entries.get(id).map_or(pause, |entry| entry.next_attempt_at_ms.max(pause));
                    window.again(*id, next_at, None, None);
                }
            }
        }
    }

    /// Chooses the requests to send now, within the app's room in flight and each lane's
    /// back-off; and when to look again (ms) if nothing else happens.
    fn choose(&self, events: &mut Window, cdrs: &mut Window, busy: usize, now: i64) -> (Requests, Option<i64>) {
        let mut room = self.config.push_max_in_flight.saturating_sub(busy);
        let mut requests = Vec::new();
        let mut wake_at: Option<i64> = None;
        let mut earliest = |at: Option<i64>| {
            if let Some(at) = at {
                wake_at = Some(wake_at.map_or(at, |w: i64| w.min(at)));
            }
        };

        // Events: each call's head, if due, oldest first.
        earliest(events.promote(now));
        let (mut allowed, probe_at) = events.allowance(now);
        earliest(probe_at);
        if room > 0 && allowed > 0 && events.ready.is_empty() {
            if let Some(id) = events.early_probe() {
                events.take_early(id);
                events.stats.in_flight_started(1);
                requests.push((Lane::Events, vec![id], true));
                room -= 1;
                allowed = 0;
                events.backoff.probing = true;
            }
        }
        while room > 0 && allowed > 0 {
            let Some(id) = events.ready.first().copied() else { break };
            events.take(id);
            events.stats.in_flight_started(1);
            requests.push((Lane::Events, vec![id], false));
            room -= 1;
            allowed -= 1;
            if events.backoff.active() {
                events.backoff.probing = true;
            }
        }

        // CDRs: those whose calls have no event waiting, merged up to `cdr_batch_max`.
        earliest(cdrs.promote(now));
        let (mut allowed, probe_at) = cdrs.allowance(now);
        earliest(probe_at);
        if room == 0 || allowed == 0 {
            return (requests, wake_at);
        }
        if cdrs.ready.is_empty() {
            if let Some(id) = cdrs.early_probe() {
                cdrs.take_early(id);
                cdrs.stats.in_flight_started(1);
                requests.push((Lane::Cdrs, vec![id], true));
                cdrs.backoff.probing = true;
                return (requests, wake_at);
            }
        }
        let max = self.config.cdr_batch_max;
        let flush_ms = i64::try_from(self.config.cdr_flush_ms).unwrap_or(i64::MAX);
        let mut ready: Vec<(u64, bool, i64)> = Vec::new();
        let wanted = max.saturating_mul(room.min(allowed));
        for id in cdrs.ready.iter().take(CDR_LOOK) {
            let Some(entry) = cdrs.entries.get(id) else { continue };
            if entry.read_round > events.whole_round || events.calls.contains_key(&entry.call) {
                // Its call's events go first (their delivery wakes this dispatcher).
                continue;
            }
            ready.push((*id, entry.attempts == 0, entry.created_at_ms));
            if ready.len() >= wanted {
                break;
            }
        }
        for batch in ready.chunks(max) {
            if room == 0 || allowed == 0 {
                break;
            }
            // Merge: a partial batch of fresh CDRs waits for more, at most cdr_flush_ms after
            // its oldest.
            if batch.len() < max && batch.iter().all(|(_, fresh, _)| *fresh) {
                let oldest = batch.iter().map(|(_, _, created)| *created).min().unwrap_or(now);
                let merge_until = oldest.saturating_add(flush_ms);
                if now < merge_until {
                    earliest(Some(merge_until));
                    break;
                }
            }
            let ids: Vec<u64> = batch.iter().map(|(id, _, _)| *id).collect();
            ids.iter().for_each(|id| cdrs.take(*id));
            cdrs.stats.in_flight_started(ids.len());
            requests.push((Lane::Cdrs, ids, false));
            room -= 1;
            allowed -= 1;
            if cdrs.backoff.active() {
                cdrs.backoff.probing = true;
            }
        }
        (requests, wake_at)
    }

    /// While the memory budget for waiting pushes is used up, moves what a cut-off lane holds
    /// beyond its window with its body on disk to the spill (key and header too), up to
    /// [`SPILL_STEPS`] steps of [`SPILL_STEP`]. A failure is logged: the pushes stay in the call
    /// log, where they are safe, only not out of memory.
    async fn spill(&self, app_key: &str, window: &Window) {
        if !window.cut_off {
            return;
        }
        for _ in 0..SPILL_STEPS {
            if !self.calls.over_budget() {
                return;
            }
            let keep = window.entries.keys().copied().collect();
            match self.calls.spill_lane(app_key, window.lane, keep, SPILL_STEP).await {
                Ok(moved) => {
                    if moved > 0 {
                        tracing::debug!(app_key, lane = window.lane.name(), moved, "waiting pushes spilled to disk");
                    }
                    if moved < SPILL_STEP {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(app_key, lane = window.lane.name(), error = %err, "cannot spill waiting pushes to disk; they stay in the call log");
                    return;
                }
            }
        }
    }

    /// Logs a warning when the app's backlog crosses `push_backlog_warn` or its oldest push
    /// `push_age_warn_secs`, and a note when both are below again; returns whether it is warned.
    fn watch_backlog(&self, app_key: &str, windows: [&Window; 2], warned: bool) -> bool {
        let now = self.now_ms();
        let mut over = Vec::new();
        for window in windows {
            let Ok(backlog) = self.calls.lane_backlog(app_key, window.lane) else { continue };
            let (waiting, age_secs) = (backlog.waiting, backlog.oldest_ms.map_or(0, |at| (now - at).max(0) / 1000));
            if usize::try_from(waiting).unwrap_or(usize::MAX) > self.config.push_backlog_warn
                || u64::try_from(age_secs).unwrap_or(0) > self.config.push_age_warn_secs
            {
                over.push((window.lane, waiting, age_secs));
            }
        }
        match (warned, over.is_empty()) {
            (false, false) => {
                for (lane, waiting, age_secs) in &over {
                    tracing::warn!(
                        app_key,
                        lane = lane.name(),
                        waiting,
                        oldest_age_secs = age_secs,
                        backlog_warn = self.config.push_backlog_warn,
                        age_warn_secs = self.config.push_age_warn_secs,
                        "pushes are falling behind"
                    );
                }
                true
            }
            (true, true) => {
                tracing::info!(app_key, "pushes have caught up: the backlog is back below its thresholds");
                false
            }
            (warned, _) => warned,
        }
    }
}
