//! [`SharedLimit`]: one quota enforced across processes from batches of tokens reserved in a
//! [`RateStore`], with the local share when the store is down.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::settings::{Counters, Settings};
use super::store::{RateStore, Reservation, Reserved, micros};
use crate::error::Error;

/// Answers after which a store whose answers come too late to spend counts as down.
const LATE_ANSWERS_FOR_FALLBACK: u32 = 3;

/// How fast the store's clock may run against this process's, in millionths: ntpd slews a
/// clock by at most 500 ppm, so two clocks part by at most 1,000 ppm.
const CLOCK_DRIFT_PPM: i64 = 1_000;

/// How long an answer's bounds on the store's clock narrow later answers' (microseconds):
/// short, so that a clock slewed faster than the drift above (chrony correcting a large
/// offset) or a store that fails over to a server with another clock moves a token by at most
/// what it moves in a second.
const CLOCK_BOUNDS_AGE: i64 = 1_000_000;

/// One platform quota (`limit` calls a second) shared by every process that limits the same
/// key in the same store. Cheap to clone; clones share the local token cache.
///
/// Build one with [`SharedLimits::limit`](super::SharedLimits::limit); how it works and what it
/// guarantees are in the [module docs](super).
#[derive(Clone)]
pub struct SharedLimit {
    inner: Arc<Inner>,
}

struct Inner {
    key: String,
    limit: u32,
    /// The store's time between two tokens.
    interval: Duration,
    /// Tokens one reservation asks for at most (`interval * max_batch <= batch_period`).
    max_batch: u32,
    settings: Settings,
    store: Arc<dyn RateStore>,
    member: Arc<str>,
    counters: Arc<Counters>,
    state: Mutex<State>,
    /// Woken when a reservation ends (granted, refused or failed).
    reserved: Notify,
    /// Local times are kept as microseconds since this instant.
    epoch: Instant,
    /// How far the clocks may drift apart while a batch is spent (microseconds).
    spend_drift: i64,
}

#[derive(Debug)]
struct State {
    batch: Option<Batch>,
    /// Tokens the next reservation asks for, before the callers waiting are counted.
    next_tokens: u32,
    /// The callers in line for a token, by their tickets: the oldest gets the next token.
    tickets: BTreeSet<u64>,
    /// The ticket the next caller in line gets.
    next_ticket: u64,
    /// The newest ticket the current batch's tokens go to (computed when first needed): the
    /// batch's tokens are owed to the oldest tickets in line, as many as it has left.
    admit_upto: Option<u64>,
    reserving: bool,
    /// No reservation before this: the key's TAT was beyond the horizon.
    not_before: Option<Instant>,
    /// Live processes the store counted last.
    live: Option<u32>,
    late_answers: u32,
    fallback: Option<Fallback>,
    /// What the answers so far tell of the store's clock.
    clock: Option<ClockBounds>,
}

/// Bounds on the store's clock: at local time `t` (microseconds since [`Inner::epoch`]) it
/// reads between `t + lo` and `t + hi`, each bound as known from an answer sent at `lo_at` or
/// `hi_at`. An answer sent at `t0` and received at `t1` that read `now` on the store's clock
/// puts the offset within `[now - t1, now - t0]`; the tightest answers of the last second,
/// widened by the drift since they were sent, narrow a slow answer's bounds, so a slow
/// answer's tokens are as spendable as a fast one's.
#[derive(Debug, Clone, Copy)]
struct ClockBounds {
    lo: i64,
    lo_at: i64,
    hi: i64,
    hi_at: i64,
}

/// Reserved tokens, spendable from `from` to `until` (local clock).
#[derive(Debug, Clone, Copy)]
struct Batch {
    from: Instant,
    until: Instant,
    left: u32,
    size: u32,
}

/// The local share while the store is down (and during the hand-over after it answers again):
/// one call every `spacing`, not before `next_at`.
#[derive(Debug, Clone)]
struct Fallback {
    next_at: Instant,
    spacing: Duration,
    /// When the store is asked again (during the outage).
    retry_at: Instant,
    /// Set once the store answered again: its tokens are spent, still spaced by the local
    /// share, until then.
    handover_until: Option<Instant>,
    /// Slots of the share given back by callers that left before them (their call's deadline
    /// passed): the next callers take them before new ones, so that callers giving up and
    /// asking again do not push the share's schedule ever further ahead.
    free: BTreeSet<Instant>,
    /// Which outage this share is of: a slot is given back only to the share it came from.
    outage: u64,
}

impl Fallback {
    /// The share's next slot: the earliest given back that is still to come, or a new one.
    fn take_slot(&mut self, now: Instant) -> Instant {
        while let Some(slot) = self.free.pop_first() {
            if slot >= now {
                return slot;
            }
        }
        let at = self.next_at.max(now);
        self.next_at = at + self.spacing;
        at
    }
}

enum Step {
    Done,
    /// A token is taken: the call goes out at this instant, a slot of the share of `outage`.
    SleepUntilDone(Instant, u64),
    SleepUntil(Instant),
    Wait,
    Reserve(u32),
}

impl fmt::Debug for SharedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimit")
            .field("key", &self.inner.key)
            .field("limit", &self.inner.limit)
            .field("interval", &self.inner.interval)
            .field("max_batch", &self.inner.max_batch)
            .field("store", &self.inner.store.name())
            .finish_non_exhaustive()
    }
}

impl SharedLimit {
    pub(super) fn new(
        key: String,
        limit: u32,
        settings: Settings,
        store: Arc<dyn RateStore>,
        member: Arc<str>,
        counters: Arc<Counters>,
    ) -> Result<Self, Error> {
        let rate = settings.effective_rate(limit)?;
        // Rounded up: a longer interval only makes the limit safer.
        let interval = Duration::from_micros((1e6 / rate).ceil() as u64);
        let max_batch = (micros(settings.batch_period) / micros(interval)).max(1);
        let max_batch = u32::try_from(max_batch).unwrap_or(u32::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                limit,
                interval,
                max_batch,
                settings,
                store,
                member,
                counters,
                state: Mutex::new(State {
                    batch: None,
                    next_tokens: 1,
                    tickets: BTreeSet::new(),
                    next_ticket: 0,
                    admit_upto: None,
                    reserving: false,
                    not_before: None,
                    live: None,
                    late_answers: 0,
                    fallback: None,
                    clock: None,
                }),
                reserved: Notify::new(),
                epoch: Instant::now(),
                spend_drift: {
                    let spend =
                        settings.horizon + settings.batch_period.max(interval) + settings.grace;
                    i64::try_from(spend.as_micros()).unwrap_or(i64::MAX / 4)
                        / (1_000_000 / CLOCK_DRIFT_PPM)
                        + 1
                },
            }),
        })
    }

    /// The key in the store.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The configured limit, in calls a second.
    pub fn limit(&self) -> u32 {
        self.inner.limit
    }

    /// The rate the limiter runs at: the limit less the headroom of the module docs, in calls
    /// a second.
    pub fn effective_rate(&self) -> f64 {
        1.0 / self.inner.interval.as_secs_f64()
    }

    /// Tokens one reservation takes at most.
    pub fn max_batch(&self) -> u32 {
        self.inner.max_batch
    }

    /// Whether calls are admitted by the local share now (the store is down, or answered again
    /// less than the hand-over ago).
    pub fn is_falling_back(&self) -> bool {
        self.inner.lock().fallback.is_some()
    }

    /// Waits until one call may go out. Never fails: when the store cannot be reached the call
    /// waits for the local share instead. Callers that wait are served in the order they
    /// came: a token goes to the oldest caller in line, not to whoever asks first after it is
    /// reserved. Cancel-safe: a caller dropped while waiting takes nothing (its turn passes to
    /// the next in line), and a reservation it was making is handed to the next caller.
    pub async fn acquire(&self) {
        let inner = &*self.inner;
        let mut waiting = WaitingGuard {
            inner,
            ticket: None,
        };
        loop {
            let notified = inner.reserved.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so that a reservation ending in between
            // still wakes this caller.
            notified.as_mut().enable();
            let step = inner.step(&mut waiting.ticket);
            match step {
                Step::Done => return,
                Step::SleepUntilDone(at, outage) => {
                    let mut slot = SlotGuard {
                        inner,
                        slot: Some((at, outage)),
                    };
                    tokio::time::sleep_until(at).await;
                    slot.slot = None;
                    return;
                }
                Step::SleepUntil(at) => tokio::time::sleep_until(at).await,
                Step::Wait => notified.await,
                Step::Reserve(tokens) => {
                    let mut guard = ReservingGuard { inner, done: false };
                    inner.reserve(tokens).await;
                    guard.done = true;
                }
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the caller holding `ticket` (none yet: it just came) does next, from the state
    /// now. A caller that cannot take a token at once gets a ticket: its place in line.
    fn step(&self, ticket: &mut Option<u64>) -> Step {
        let now = Instant::now();
        let mut s = self.lock();
        let s = &mut *s;
        if let Some(fallback) = &mut s.fallback {
            match fallback.handover_until {
                None if s.reserving || now < fallback.retry_at => {
                    leave(&mut s.tickets, ticket);
                    return self.take_local(fallback, now);
                }
                None => {
                    // Time to ask the store again; the other callers go on with the local share.
                    join(s, ticket);
                    s.reserving = true;
                    return Step::Reserve(s.next_tokens.clamp(1, self.max_batch));
                }
                Some(until) if now >= until => {
                    tracing::info!(
                        key = %self.key, store = self.store.name(),
                        "rate limit: hand-over done; calls are limited by the shared store alone"
                    );
                    self.counters.recoveries.fetch_add(1, Ordering::Relaxed);
                    s.fallback = None;
                    // The share's spacing of the store's tokens ends with it.
                    s.not_before = None;
                }
                Some(_) => {}
            }
        }
        if let Some(batch) = &mut s.batch
            && (now > batch.until || batch.left == 0)
        {
            let used = batch.size - batch.left;
            self.counters
                .tokens_expired
                .fetch_add(u64::from(batch.left), Ordering::Relaxed);
            // Double while batches run out, shrink to what was used when they expire.
            s.next_tokens = if batch.left == 0 {
                batch.size.saturating_mul(2)
            } else {
                used.max(1)
            }
            .min(self.max_batch);
            s.batch = None;
            s.admit_upto = None;
        }
        if let Some(batch) = s.batch {
            if now < batch.from {
                join(s, ticket);
                return Step::SleepUntil(batch.from);
            }
            if !admitted(s, *ticket, batch.left) {
                // Its tokens are owed to the callers in line before this one.
                join(s, ticket);
                return Step::Wait;
            }
        }
        if let Some(batch) = &mut s.batch {
            let at = match &mut s.fallback {
                // During the hand-over the store's tokens are still spaced by the local share.
                Some(fallback) => {
                    let at = fallback.take_slot(now);
                    if at > batch.until {
                        fallback.free.insert(at);
                        // This batch ends before the share allows another call: its tokens
                        // expire, the next reservation starts after the share's next slot.
                        self.counters
                            .tokens_expired
                            .fetch_add(u64::from(batch.left), Ordering::Relaxed);
                        s.next_tokens = (batch.size - batch.left).max(1);
                        s.batch = None;
                        s.admit_upto = None;
                        s.not_before = Some(at);
                        join(s, ticket);
                        // The callers turned away from this batch wait for a reservation: any
                        // of them may make it at `at`, not only this one, which may be dropped.
                        self.reserved.notify_waiters();
                        return Step::SleepUntil(at);
                    }
                    at
                }
                None => now,
            };
            batch.left -= 1;
            let spent = batch.left == 0;
            self.counters.acquired.fetch_add(1, Ordering::Relaxed);
            leave(&mut s.tickets, ticket);
            if spent && !s.tickets.is_empty() {
                // The batch is spent and callers wait behind this one: wake the oldest to
                // reserve the next.
                self.reserved.notify_one();
            }
            return if at > now {
                Step::SleepUntilDone(at, s.fallback.as_ref().map_or(0, |f| f.outage))
            } else {
                Step::Done
            };
        }
        join(s, ticket);
        if s.reserving {
            return Step::Wait;
        }
        if let Some(at) = s.not_before {
            if now < at {
                return Step::SleepUntil(at);
            }
            s.not_before = None;
        }
        s.reserving = true;
        let others = u32::try_from(s.tickets.len() - 1).unwrap_or(u32::MAX);
        let tokens = s
            .next_tokens
            .max(others.saturating_add(1))
            .clamp(1, self.max_batch);
        Step::Reserve(tokens)
    }

    /// A call admitted by the local share.
    fn take_local(&self, fallback: &mut Fallback, now: Instant) -> Step {
        let at = fallback.take_slot(now);
        self.counters
            .acquired_fallback
            .fetch_add(1, Ordering::Relaxed);
        if at > now {
            Step::SleepUntilDone(at, fallback.outage)
        } else {
            Step::Done
        }
    }

    /// Asks the store for `tokens` and records the answer.
    async fn reserve(&self, tokens: u32) {
        let reservation = Reservation {
            key: &self.key,
            member: &self.member,
            tokens,
            interval_micros: micros(self.interval),
            horizon_micros: micros(self.settings.horizon),
            live_micros: micros(self.settings.live_window),
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            self.settings.store_timeout,
            self.store.reserve(&reservation),
        )
        .await;
        let received = Instant::now();
        self.counters.reservations.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        match answer {
            Ok(Ok(reserved)) => self.answered(&mut s, tokens, reserved, sent, received),
            Ok(Err(e)) => self.failed(&mut s, received, &e.to_string()),
            Err(_) => self.failed(
                &mut s,
                received,
                &format!("no answer within {:?}", self.settings.store_timeout),
            ),
        }
        s.reserving = false;
        drop(s);
        self.reserved.notify_waiters();
    }

    fn answered(
        &self,
        s: &mut State,
        tokens: u32,
        reserved: Reserved,
        sent: Instant,
        received: Instant,
    ) {
        s.live = Some(reserved.live.max(1));
        if let Some(fallback) = &mut s.fallback
            && fallback.handover_until.is_none()
        {
            // The other processes may still be on their local share: every one of them asks
            // the store within one retry interval, so this one keeps spacing its calls by the
            // share until they all can have seen the store again.
            let handover = self.settings.store_retry + self.settings.store_timeout;
            fallback.handover_until = Some(received + handover);
            tracing::info!(
                key = %self.key, store = self.store.name(), ?handover,
                "rate limit: the shared store answers again; handing over from the local share"
            );
        }
        let (lo, hi) = self.clock_bounds(s, reserved.now_micros, sent, received);
        if reserved.granted == 0 {
            // The key's TAT is beyond the horizon: ask again when it is within, by the store's
            // clock, which reads at least `t + lo` at local time `t`. Sent a round trip early,
            // so that a process far from the store is not always the last to ask.
            let within =
                reserved.tat_micros - i64::try_from(self.settings.horizon.as_micros()).unwrap_or(0);
            let rtt = i64::try_from((received - sent).as_micros()).unwrap_or(0);
            s.not_before = Some(self.instant(within - lo - rtt).max(received));
            return;
        }
        self.counters
            .tokens_reserved
            .fetch_add(u64::from(reserved.granted), Ordering::Relaxed);
        // The store read its clock at some local time between `sent` and `received`: at local
        // time t its clock is at least `now + (t - received)` and at most `now + (t - sent)`;
        // earlier answers may bound it more tightly (`clock_bounds`). So the slot has surely
        // started from `from` on, and surely not ended (grace included) until `until`: the
        // proof in the module docs needs no bound on the clocks' offset.
        let slot = i64::try_from(micros(self.interval) * u64::from(reserved.granted))
            .unwrap_or(i64::MAX / 4);
        let grace = i64::try_from(self.settings.grace.as_micros()).unwrap_or(i64::MAX / 4);
        let from = self.instant(reserved.start_micros - lo);
        let until = self.instant(reserved.start_micros + slot + grace - hi);
        if until <= from.max(received) {
            // The answer came later than the slot and its grace allow: nothing of it can be
            // spent.
            self.counters.late_answers.fetch_add(1, Ordering::Relaxed);
            self.counters
                .tokens_expired
                .fetch_add(u64::from(reserved.granted), Ordering::Relaxed);
            s.late_answers += 1;
            if s.late_answers >= LATE_ANSWERS_FOR_FALLBACK {
                s.late_answers = 0;
                self.failed(
                    s,
                    received,
                    &format!(
                        "answers take longer than a batch can be spent ({:?})",
                        received - sent
                    ),
                );
            }
            return;
        }
        s.late_answers = 0;
        debug_assert!(reserved.granted <= tokens);
        s.admit_upto = None;
        s.batch = Some(Batch {
            from,
            until,
            left: reserved.granted,
            size: reserved.granted,
        });
    }

    /// Microseconds from [`Inner::epoch`] to `at`.
    fn local(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX / 4)
    }

    /// The local instant `local` microseconds after [`Inner::epoch`] (the epoch for earlier).
    fn instant(&self, local: i64) -> Instant {
        self.epoch + Duration::from_micros(u64::try_from(local).unwrap_or(0))
    }

    /// The bounds `(lo, hi)` on the store's clock offset after an answer that read `now` on it,
    /// sent at `sent` and received at `received`: this answer's, narrowed by the tightest so far
    /// widened by the drift since it. When they disagree (the store's clock stepped, or the
    /// store is another server now), this answer's alone, from which the next narrow again.
    fn clock_bounds(
        &self,
        s: &mut State,
        now: i64,
        sent: Instant,
        received: Instant,
    ) -> (i64, i64) {
        let (sent, received) = (self.local(sent), self.local(received));
        let answer = ClockBounds {
            lo: now - received,
            lo_at: sent,
            hi: now - sent,
            hi_at: sent,
        };
        let drift = |at: i64| (received - at).max(0) / (1_000_000 / CLOCK_DRIFT_PPM) + 1;
        let mut bounds = answer;
        if let Some(known) = s.clock {
            if received - known.lo_at <= CLOCK_BOUNDS_AGE
                && known.lo - drift(known.lo_at) > bounds.lo
            {
                bounds.lo = known.lo - drift(known.lo_at);
                bounds.lo_at = known.lo_at;
            }
            if received - known.hi_at <= CLOCK_BOUNDS_AGE
                && known.hi + drift(known.hi_at) < bounds.hi
            {
                bounds.hi = known.hi + drift(known.hi_at);
                bounds.hi_at = known.hi_at;
            }
            if bounds.lo > bounds.hi {
                tracing::debug!(
                    key = %self.key, store = self.store.name(),
                    "rate limit: the store's clock moved; its bounds start again"
                );
                bounds = answer;
            }
        }
        s.clock = Some(bounds);
        // The tokens are spent up to a horizon, a slot and the grace after the answer: the
        // clocks may drift apart meanwhile too.
        (bounds.lo - self.spend_drift, bounds.hi + self.spend_drift)
    }

    /// The store failed: the local share from now on (after a quiet period at the start of an
    /// outage), the store asked again after the retry interval.
    fn failed(&self, s: &mut State, now: Instant, error: &str) {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        s.batch = None;
        s.admit_upto = None;
        s.not_before = None;
        let retry_at = now + self.settings.store_retry;
        match &mut s.fallback {
            Some(fallback) if fallback.handover_until.is_none() => {
                fallback.retry_at = retry_at;
                tracing::debug!(key = %self.key, store = self.store.name(), error, "rate limit: the shared store is still down");
            }
            other => {
                let processes = s.live.unwrap_or(self.settings.assumed_processes).max(1);
                let spacing = self.settings.share_spacing(self.interval, processes);
                // A hand-over interrupted keeps its spacing; a new outage starts after every
                // token reserved before it can have been spent (module docs).
                let next_at = match other {
                    Some(fallback) => fallback.next_at.max(now),
                    None => now + self.settings.quiet_period(self.interval, processes),
                };
                // An interrupted hand-over goes on with its schedule and the slots given back.
                let (free, outage) = match other.as_mut() {
                    Some(fallback) => (std::mem::take(&mut fallback.free), fallback.outage),
                    None => (
                        BTreeSet::new(),
                        self.counters.outages.fetch_add(1, Ordering::Relaxed) + 1,
                    ),
                };
                tracing::warn!(
                    key = %self.key, store = self.store.name(), error, processes,
                    share_per_second = 1.0 / spacing.as_secs_f64(),
                    retry_in = ?self.settings.store_retry,
                    "rate limit: the shared store cannot be reached; falling back to this process's share"
                );
                *other = Some(Fallback {
                    next_at,
                    spacing,
                    retry_at,
                    handover_until: None,
                    free,
                    outage,
                });
            }
        }
    }
}

/// Puts the caller in line if it is not yet: it gets the next ticket.
fn join(s: &mut State, ticket: &mut Option<u64>) {
    if ticket.is_none() {
        let t = s.next_ticket;
        s.next_ticket += 1;
        s.tickets.insert(t);
        *ticket = Some(t);
    }
}

/// Takes the caller out of line: it has its token, or it leaves.
fn leave(tickets: &mut BTreeSet<u64>, ticket: &mut Option<u64>) {
    if let Some(t) = ticket.take() {
        tickets.remove(&t);
    }
}

/// Whether the caller holding `ticket` (none: it just came) may take one of the `left` tokens
/// of the batch: they are owed to the oldest callers in line, and only those beyond them go to
/// a caller that just came.
fn admitted(s: &mut State, ticket: Option<u64>, left: u32) -> bool {
    let left = left as usize;
    if left > s.tickets.len() {
        return true;
    }
    let tickets = &s.tickets;
    // Taking a token owed leaves the newest owed the same (one token and one caller fewer);
    // a caller leaving the line, or another batch, computes it again. Computed before a caller
    // that just came is turned away, so that a caller owed a token that leaves always knows it
    // must pass its turn on.
    let upto = *s.admit_upto.get_or_insert_with(|| {
        tickets
            .iter()
            .nth(left.saturating_sub(1))
            .copied()
            .unwrap_or(u64::MAX)
    });
    ticket.is_some_and(|ticket| ticket <= upto)
}

/// Takes a caller out of line when it leaves, admitted or dropped.
struct WaitingGuard<'a> {
    inner: &'a Inner,
    ticket: Option<u64>,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            let mut s = self.inner.lock();
            s.tickets.remove(&ticket);
            if s.batch.is_some() && s.admit_upto.is_none_or(|upto| ticket <= upto) {
                // A token owed to it (or maybe owed: not yet counted) goes to the next in line.
                s.admit_upto = None;
                drop(s);
                self.inner.reserved.notify_waiters();
            }
        }
    }
}

/// Gives a slot of the local share back when its caller leaves before it (its call's deadline
/// passed), so that the next caller takes it instead of a new one further ahead.
struct SlotGuard<'a> {
    inner: &'a Inner,
    slot: Option<(Instant, u64)>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Some((at, outage)) = self.slot {
            let mut s = self.inner.lock();
            if let Some(fallback) = &mut s.fallback
                && fallback.outage == outage
                && at > Instant::now()
            {
                fallback.free.insert(at);
            }
        }
    }
}

/// Hands a reservation over when the caller making it is dropped before the store answered.
struct ReservingGuard<'a> {
    inner: &'a Inner,
    done: bool,
}

impl Drop for ReservingGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner.lock().reserving = false;
            self.inner.reserved.notify_waiters();
        }
    }
}
