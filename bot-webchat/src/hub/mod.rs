//! The hub: every socket and user of this node, the per-user histories, and the one sweeper
//! that enforces every socket's time-outs.
//!
//! Rooms: `conn.rs` (one socket's queue and close reason), `history.rs` (one user's sockets and
//! kept messages); the table of users, delivery and the sweep are here.
//!
//! Time-outs cost no timer per socket: each socket stores when it was last heard from (a coarse
//! clock the sweeper advances), and the sweeper walks every socket once per sweep interval.

mod conn;
mod history;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bot_core::EventId;
use slab::Slab;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub(crate) use conn::{Conn, Pushed};
use history::{Kept, UserState};

use crate::config::WebChatConfig;
use crate::metrics::Counters;
use crate::protocol::{CloseReason, Outbound, VERSION};

/// The users of this node, and how many of them have a socket open (the rest are offline
/// users whose history is kept).
///
/// Each user's state is boxed: the table keeps a quarter to half of its buckets empty, and an
/// empty bucket then costs 24 bytes, not the state's 120 (19,000 users: 32,768 buckets).
#[derive(Debug, Default)]
struct Users {
    map: HashMap<Box<str>, Box<UserState>, foldhash::fast::RandomState>,
    online: usize,
}

impl Users {
    fn offline(&self) -> usize {
        self.map.len() - self.online
    }
}

/// Every socket and user of this node.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) config: WebChatConfig,
    started: Instant,
    /// Milliseconds since `started`, advanced by the sweeper: what sockets stamp when heard from,
    /// without reading the system clock per frame.
    clock_ms: AtomicU64,
    users: Mutex<Users>,
    sockets: Mutex<Slab<Arc<Conn>>>,
    pub(crate) counters: Counters,
    /// This hub's numbering: sequence numbers compare only within one epoch (one node's run).
    pub(crate) epoch: String,
    /// Whether presence is written somewhere (then `dirty` collects the users to write).
    tracking: AtomicBool,
    /// Users whose count of sockets on this node changed since the presence writer last looked.
    dirty: Mutex<HashSet<Box<str>, foldhash::fast::RandomState>>,
    /// Whether message numbers come from the cluster's database ([`Hub::deliver_numbered`])
    /// instead of this hub's own counters.
    cluster_numbered: bool,
    /// Cluster-wide numbering: the users holding early messages, and since when.
    waiting: Mutex<HashMap<Box<str>, Instant, foldhash::fast::RandomState>>,
}

/// What the database keeps of a user, read for a join: the user's latest number, the kept
/// messages after the browser's `last_seq` (as frames), and whether some between were dropped.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct Stored {
    pub(crate) latest: u64,
    pub(crate) rows: Vec<(u64, Utf8Bytes)>,
    pub(crate) gap: bool,
}

/// The frame of one bot message.
pub(crate) fn message_frame(seq: u64, id: &str, at: u64, message: &str) -> Utf8Bytes {
    Utf8Bytes::from(format!(
        r#"{{"type":"message","seq":{seq},"id":"{id}","at":{at},"message":{message}}}"#
    ))
}

/// Where a reconnecting browser left off: the last sequence number it saw, and the epoch of
/// the numbering (the welcome's `epoch`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resume<'a> {
    pub(crate) last_seq: u64,
    pub(crate) epoch: Option<&'a str>,
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    /// How many missed messages were queued after the welcome.
    pub(crate) resumed: usize,
}

/// Cluster-wide numbering: a join whose database read is older than what this node delivered
/// since, and which this node no longer keeps (another join of the user moved the node's count
/// forward from a newer read). The messages numbered above `after`, up to `through`, are to be
/// read from the database, and the join finished with them; it is still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Behind {
    pub(crate) after: u64,
    pub(crate) through: u64,
}

/// What a delivery reached on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The sequence numbers given to the messages, in order (none for a typing indicator or a
    /// send already made by the same handler event).
    pub seqs: Vec<u64>,
    /// How many of the user's sockets on this node the messages were queued for.
    pub sockets: usize,
}

impl Hub {
    pub(crate) fn new(config: WebChatConfig) -> Self {
        Self {
            config,
            started: Instant::now(),
            clock_ms: AtomicU64::new(0),
            users: Mutex::new(Users::default()),
            sockets: Mutex::new(Slab::new()),
            counters: Counters::default(),
            epoch: format!(
                "{}-{}",
                bot_core::telemetry::node_id(),
                crate::token::unix_now_ms()
            ),
            tracking: AtomicBool::new(false),
            dirty: Mutex::new(HashSet::default()),
            cluster_numbered: false,
            waiting: Mutex::new(HashMap::default()),
        }
    }

    #[cfg(feature = "postgres")]
    /// Takes message numbers from the cluster's database from now on (before the hub is shared).
    pub(crate) fn number_cluster_wide(mut self) -> Self {
        self.cluster_numbered = true;
        self
    }

    /// Whether message numbers come from the cluster's database.
    pub(crate) fn is_cluster_numbered(&self) -> bool {
        self.cluster_numbered
    }

    #[cfg(feature = "postgres")]
    /// Collects presence changes from now on ([`Hub::take_dirty`]).
    pub(crate) fn track_presence(&self) {
        self.tracking.store(true, Ordering::Relaxed);
    }

    fn mark_dirty(&self, user: &str) {
        if self.tracking.load(Ordering::Relaxed) {
            lock(&self.dirty).insert(user.into());
        }
    }

    #[cfg(feature = "postgres")]
    /// The users whose count of sockets here changed since the last call, with their count now.
    pub(crate) fn take_dirty(&self) -> Vec<(String, usize)> {
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        let users = lock(&self.users);
        (dirty.into_iter())
            .map(|user| {
                let count = users.map.get(&user).map_or(0, |s| s.sockets.len());
                (user.into_string(), count)
            })
            .collect()
    }

    #[cfg(feature = "postgres")]
    /// Marks `users` as changed again (their write failed).
    pub(crate) fn mark_users_dirty(&self, users: impl IntoIterator<Item = String>) {
        lock(&self.dirty).extend(users.into_iter().map(String::into_boxed_str));
    }

    #[cfg(feature = "postgres")]
    /// Marks every user with a socket here as changed (the presence rows must be written again).
    pub(crate) fn mark_all_dirty(&self) {
        let online: Vec<Box<str>> = (lock(&self.users).map.iter())
            .filter(|(_, s)| !s.sockets.is_empty())
            .map(|(user, _)| user.clone())
            .collect();
        lock(&self.dirty).extend(online);
    }

    /// The hub clock, in milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    /// A new socket, not yet joined.
    pub(crate) fn accept(&self) -> Arc<Conn> {
        let mut sockets = lock(&self.sockets);
        let entry = sockets.vacant_entry();
        let conn = Arc::new(Conn::new(entry.key(), self.now_ms()));
        entry.insert(conn.clone());
        conn
    }

    /// Forgets a socket that ended (and its user's link to it).
    pub(crate) fn remove(&self, conn: &Arc<Conn>, user: Option<&str>) {
        lock(&self.sockets).try_remove(conn.key);
        if let Some(user) = user {
            let now = self.now_ms();
            let mut users = lock(&self.users);
            if let Some(state) = users.map.get_mut(user) {
                let before = state.sockets.len();
                state.sockets.retain(|c| !Arc::ptr_eq(c, conn));
                state.last_active_ms = now;
                let emptied = before > 0 && state.sockets.is_empty();
                // With cluster-wide numbering the database keeps the history, and what this
                // node delivered is only current while it has sockets (or joins) for the user.
                let forget = state.sockets.is_empty()
                    && if self.cluster_numbered {
                        state.joining == 0
                    } else {
                        !state.has_history()
                    };
                if emptied {
                    users.online -= 1;
                }
                if forget {
                    users.map.remove(user);
                    lock(&self.waiting).remove(user);
                }
            }
            drop(users);
            self.mark_dirty(user);
        }
    }

    /// Joins `conn` as `user`: queues the welcome, then the messages after `last_seq`, under the
    /// same lock as deliveries, so that none is missed or sent twice.
    pub(crate) fn join(&self, conn: &Arc<Conn>, user: &str, resume: Option<Resume<'_>>) -> Joined {
        let joined = self.join_locked(conn, user, resume);
        self.mark_dirty(user);
        self.counters.joined.fetch_add(1, Ordering::Relaxed);
        self.counters.frames_out(joined.resumed as u64 + 1);
        joined
    }

    fn join_locked(&self, conn: &Arc<Conn>, user: &str, resume: Option<Resume<'_>>) -> Joined {
        let max = self.config.max_outbound_bytes;
        let mut users = lock(&self.users);
        let users = &mut *users;
        let state = users.map.entry(user.into()).or_default();
        if state.sockets.is_empty() {
            users.online += 1;
        }
        let (frames, gap) = match resume {
            None => (Vec::new(), false),
            // Numbers of another node's run mean nothing here: say that some may be missing.
            Some(r) if r.epoch.is_some_and(|e| e != self.epoch) => (Vec::new(), true),
            Some(r) => {
                let replay = state.replay(r.last_seq);
                (replay.frames, replay.gap)
            }
        };
        let welcome = Outbound::Welcome {
            v: VERSION,
            epoch: &self.epoch,
            user,
            seq: state.seq,
            heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
            resumed: frames.len(),
            gap,
        };
        let resumed = frames.len();
        conn.push(Utf8Bytes::from(welcome.to_json()), max);
        for frame in frames {
            conn.push(frame, max);
        }
        conn.set_joined();
        state.sockets.push(conn.clone());
        Joined { resumed }
    }

    /// Numbers `messages` (each the JSON of a [`crate::protocol::WireMessage`]) for `user`,
    /// keeps them for resume and queues them for every socket of the user on this node.
    pub(crate) fn deliver(
        &self,
        user: &str,
        messages: &[&str],
        origin: Option<(EventId, u32)>,
    ) -> Delivery {
        self.deliver_to(user, messages, origin, false)
    }

    /// As [`Hub::deliver`], but only when `user` has a socket on this node (another node's
    /// envelope: the sending node keeps the history of users it does not see here).
    pub(crate) fn deliver_if_present(
        &self,
        user: &str,
        messages: &[&str],
        origin: Option<(EventId, u32)>,
    ) -> Delivery {
        self.deliver_to(user, messages, origin, true)
    }

    fn deliver_to(
        &self,
        user: &str,
        messages: &[&str],
        origin: Option<(EventId, u32)>,
        only_if_present: bool,
    ) -> Delivery {
        let at = crate::token::unix_now_ms();
        let now = self.now_ms();
        let ids: Vec<String> = (0..messages.len())
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let mut users = lock(&self.users);
        if only_if_present && users.map.get(user).is_none_or(|s| s.sockets.is_empty()) {
            return Delivery::default();
        }
        if !users.map.contains_key(user) && users.offline() >= self.config.max_offline_users {
            // Nobody is here to see it, and no room to keep it.
            drop(users);
            self.counters
                .history_dropped
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            return Delivery::default();
        }
        let state = users.map.entry(user.into()).or_default();
        if origin.as_ref().is_some_and(|o| state.already_sent(o)) {
            return Delivery {
                seqs: Vec::new(),
                sockets: state.sockets.len(),
            };
        }
        state.last_active_ms = now;
        let mut seqs = Vec::with_capacity(messages.len());
        let mut overflowed = Vec::new();
        for (message, id) in messages.iter().zip(&ids) {
            state.seq += 1;
            let seq = state.seq;
            seqs.push(seq);
            let frame = message_frame(seq, id, at, message);
            for socket in &state.sockets {
                if socket.push(frame.clone(), self.config.max_outbound_bytes) == Pushed::Overflowed
                {
                    overflowed.push(socket.key);
                }
            }
            state.keep(
                Kept {
                    seq,
                    frame,
                    origin: origin.clone(),
                },
                self.config.history_messages,
                self.config.history_bytes,
            );
        }
        let reached = state.sockets.len();
        if !overflowed.is_empty() {
            // Closing: no longer one of the user's sockets, whenever its task ends.
            state.sockets.retain(|c| !overflowed.contains(&c.key));
            if state.sockets.is_empty() {
                users.online -= 1;
            }
            tracing::debug!(
                user,
                sockets = overflowed.len(),
                "slow web chat readers closed"
            );
        }
        drop(users);
        self.counters.frames_out((reached * messages.len()) as u64);
        Delivery {
            seqs,
            sockets: reached - overflowed.len(),
        }
    }

    /// Cluster-wide numbering: announces a join of `user` that waits for the database, so that
    /// the messages that reach this node meanwhile are held for it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn begin_join(&self, user: &str) {
        lock(&self.users)
            .map
            .entry(user.into())
            .or_default()
            .joining += 1;
    }

    /// Cluster-wide numbering: announces a join as [`Hub::begin_join`] does, and abandons it
    /// when the returned guard is dropped before [`PendingJoin::settled`] (the join's future
    /// was dropped while it read the database).
    #[cfg(feature = "postgres")]
    pub(crate) fn pending_join<'a>(&'a self, user: &'a str) -> PendingJoin<'a> {
        self.begin_join(user);
        PendingJoin {
            hub: self,
            user: Some(user),
        }
    }

    /// Cluster-wide numbering: a join announced with [`Hub::begin_join`] that will not finish.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn abandon_join(&self, user: &str) {
        let mut users = lock(&self.users);
        if let Some(state) = users.map.get_mut(user) {
            state.joining = state.joining.saturating_sub(1);
            if state.joining == 0 && state.sockets.is_empty() {
                users.map.remove(user);
                lock(&self.waiting).remove(user);
            }
        }
    }

    /// Cluster-wide numbering: finishes a join announced with [`Hub::begin_join`], with what the
    /// database keeps of the user. Queues the welcome, then the messages after `last_seq` from
    /// the database and from what reached this node since it was read, once each, in order.
    ///
    /// When this node's count passed the database's answer by messages it does not keep (and
    /// `may_read_more`), the join stays pending and [`Behind`] says what to read: then call
    /// again with those rows added to `stored` (its `latest` raised to `through`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn join_numbered(
        &self,
        conn: &Arc<Conn>,
        user: &str,
        resume: Option<Resume<'_>>,
        stored: &Stored,
        epoch: &str,
        may_read_more: bool,
    ) -> Result<Joined, Behind> {
        let max = self.config.max_outbound_bytes;
        let now = self.now_ms();
        let mut users = lock(&self.users);
        let Users { map, online } = &mut *users;
        let state = map.entry(user.into()).or_default();
        state.last_active_ms = now;
        let mut overflowed = Vec::new();
        if state.watermark.is_none() {
            // The first socket of this user here: count from the database's latest; what came
            // meanwhile and is newer waits in `pending`.
            state.watermark = Some(stored.latest);
            state.seq = stored.latest;
            state.pending = state.pending.split_off(&(stored.latest + 1));
        }
        let delivered = self.drain(state, &mut overflowed);
        let watermark = state.seq;
        let (frames, gap) = match resume {
            None => (Vec::new(), false),
            Some(r) if r.epoch.is_some_and(|e| e != epoch) => (Vec::new(), true),
            Some(r) => {
                let mut frames: Vec<Utf8Bytes> = (stored.rows.iter())
                    .filter(|(seq, _)| *seq > r.last_seq && *seq <= watermark)
                    .map(|(_, frame)| frame.clone())
                    .collect();
                // Newer than the database's answer: what this node delivered since.
                let after = stored.latest.max(r.last_seq);
                let (kept, contiguous) = state.kept_between(after, watermark);
                if !contiguous && may_read_more {
                    // Another join moved this node's count past our read without delivering
                    // the messages between here: the table has them.
                    let reached = state.sockets.len();
                    Self::take_overflowed(state, &overflowed, online);
                    self.note_waiting(user, state);
                    drop(users);
                    self.counters.frames_out((reached * delivered) as u64);
                    return Err(Behind {
                        after,
                        through: watermark,
                    });
                }
                frames.extend(kept);
                (frames, stored.gap || !contiguous)
            }
        };
        state.joining = state.joining.saturating_sub(1);
        let welcome = Outbound::Welcome {
            v: VERSION,
            epoch,
            user,
            seq: watermark,
            heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
            resumed: frames.len(),
            gap,
        };
        let resumed = frames.len();
        conn.push(Utf8Bytes::from(welcome.to_json()), max);
        for frame in frames {
            conn.push(frame, max);
        }
        conn.set_joined();
        let reached = state.sockets.len();
        Self::take_overflowed(state, &overflowed, online);
        if state.sockets.is_empty() {
            *online += 1;
        }
        state.sockets.push(conn.clone());
        self.note_waiting(user, state);
        drop(users);
        self.counters.frames_out((reached * delivered) as u64);
        self.mark_dirty(user);
        self.counters.joined.fetch_add(1, Ordering::Relaxed);
        self.counters.frames_out(resumed as u64 + 1);
        Ok(Joined { resumed })
    }

    /// Cluster-wide numbering: delivers messages the database numbered to `user`'s sockets on
    /// this node, each once and in order: a number seen already is skipped, one that comes
    /// before the one preceding it waits (see [`Hub::stalled`]). How many sockets the user has
    /// here.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn deliver_numbered(&self, user: &str, frames: Vec<(u64, Utf8Bytes)>) -> usize {
        self.deliver_numbered_through(user, frames, None)
    }

    /// As [`Hub::deliver_numbered`], then gives up waiting for the numbers up to `through`
    /// (the database no longer has them).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn deliver_numbered_through(
        &self,
        user: &str,
        frames: Vec<(u64, Utf8Bytes)>,
        through: Option<u64>,
    ) -> usize {
        let now = self.now_ms();
        let mut users = lock(&self.users);
        let Some(state) = users.map.get_mut(user) else {
            return 0;
        };
        if state.sockets.is_empty() && state.joining == 0 {
            return 0;
        }
        state.last_active_ms = now;
        for (seq, frame) in frames {
            if state.watermark.is_none_or(|w| seq > w) {
                state.pending.insert(seq, frame);
            }
        }
        let mut overflowed = Vec::new();
        let mut delivered = self.drain(state, &mut overflowed);
        // A hole the database no longer fills, or that holds back more than a history's
        // worth, is not waited for.
        let overfull = (state.pending.len() > self.config.history_messages)
            .then(|| state.pending.first_key_value().map(|(seq, _)| seq - 1))
            .flatten();
        if let (Some(through), Some(w)) = (through.or(overfull), state.watermark)
            && through > w
        {
            tracing::warn!(
                user,
                from = w + 1,
                through,
                "webchat: messages no longer kept; live sockets skip them"
            );
            state.watermark = Some(through);
            state.seq = through;
            state.pending = state.pending.split_off(&(through + 1));
            delivered += self.drain(state, &mut overflowed);
        }
        let reached = state.sockets.len();
        self.note_waiting(user, state);
        if !overflowed.is_empty() {
            self.close_overflowed(&mut users, user, &overflowed);
        }
        drop(users);
        self.counters.frames_out((reached * delivered) as u64);
        reached - overflowed.len()
    }

    /// Delivers the pending messages that follow the watermark; how many.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn drain(&self, state: &mut UserState, overflowed: &mut Vec<usize>) -> usize {
        let Some(mut watermark) = state.watermark else {
            return 0;
        };
        let mut delivered = 0;
        while let Some(frame) = state.pending.remove(&(watermark + 1)) {
            watermark += 1;
            for socket in &state.sockets {
                if socket.push(frame.clone(), self.config.max_outbound_bytes) == Pushed::Overflowed
                {
                    overflowed.push(socket.key);
                }
            }
            state.keep(
                Kept {
                    seq: watermark,
                    frame,
                    origin: None,
                },
                self.config.history_messages,
                self.config.history_bytes,
            );
            delivered += 1;
        }
        state.watermark = Some(watermark);
        state.seq = watermark;
        delivered
    }

    /// Records whether `user` holds early messages (and since when, if it made no progress).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn note_waiting(&self, user: &str, state: &UserState) {
        let mut waiting = lock(&self.waiting);
        match (state.watermark, state.pending.first_key_value()) {
            (Some(_), Some(_)) => {
                waiting.entry(user.into()).or_insert_with(Instant::now);
            }
            _ => {
                waiting.remove(user);
            }
        }
    }

    /// Cluster-wide numbering: the users whose early messages have waited for longer than
    /// `wait`, each with the last number delivered and the first one waiting (the ones between
    /// are to be read from the database).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn stalled(&self, wait: Duration) -> Vec<(String, u64, u64)> {
        let users = lock(&self.users);
        let mut waiting = lock(&self.waiting);
        let now = Instant::now();
        let mut stalled = Vec::new();
        for (user, since) in waiting.iter_mut() {
            if now.saturating_duration_since(*since) < wait {
                continue;
            }
            let Some(state) = users.map.get(user) else {
                continue;
            };
            if let (Some(w), Some((first, _))) = (state.watermark, state.pending.first_key_value())
            {
                stalled.push((user.to_string(), w, *first));
                // Asked for now: ask again only if this does not fill it.
                *since = now;
            }
        }
        stalled
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// Cluster-wide numbering: each user with a socket here, and the last number delivered.
    pub(crate) fn watermarks(&self) -> Vec<(String, u64)> {
        (lock(&self.users).map.iter())
            .filter(|(_, state)| !state.sockets.is_empty())
            .filter_map(|(user, state)| Some((user.to_string(), state.watermark?)))
            .collect()
    }

    /// Takes the sockets that overflowed out of the user's (they are closing). With
    /// cluster-wide numbering, a user left with no socket and no join is forgotten at once, as
    /// [`Hub::remove`] does: what reaches this node for the user is no longer delivered, so
    /// the count would go stale, and a join that comes before the closed socket's task ends
    /// must count from the database, not from it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn close_overflowed(&self, users: &mut Users, user: &str, overflowed: &[usize]) {
        let Some(state) = users.map.get_mut(user) else {
            return;
        };
        Self::take_overflowed(state, overflowed, &mut users.online);
        if self.cluster_numbered && state.sockets.is_empty() && state.joining == 0 {
            users.map.remove(user);
            lock(&self.waiting).remove(user);
        }
    }

    /// Takes the sockets that overflowed out of the user's (they are closing).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn take_overflowed(state: &mut UserState, overflowed: &[usize], online: &mut usize) {
        if overflowed.is_empty() {
            return;
        }
        let before = state.sockets.len();
        state.sockets.retain(|c| !overflowed.contains(&c.key));
        if before > 0 && state.sockets.is_empty() {
            *online -= 1;
        }
        tracing::debug!(sockets = overflowed.len(), "slow web chat readers closed");
    }

    /// Shows the typing indicator on every socket of `user` on this node; how many.
    pub(crate) fn typing(&self, user: &str) -> usize {
        let frame = Utf8Bytes::from(Outbound::Typing.to_json());
        let users = lock(&self.users);
        let Some(state) = users.map.get(user) else {
            return 0;
        };
        for socket in &state.sockets {
            socket.push(frame.clone(), self.config.max_outbound_bytes);
        }
        state.sockets.len()
    }

    /// How many sockets `user` has open on this node.
    pub(crate) fn sockets_of(&self, user: &str) -> usize {
        lock(&self.users)
            .map
            .get(user)
            .map_or(0, |state| state.sockets.len())
    }

    /// The users with at least one joined socket on this node, and how many each has.
    pub(crate) fn online(&self) -> Vec<(String, usize)> {
        (lock(&self.users).map.iter())
            .filter(|(_, state)| !state.sockets.is_empty())
            .map(|(user, state)| (user.to_string(), state.sockets.len()))
            .collect()
    }

    /// Sockets open on this node, joined or not.
    pub(crate) fn open_sockets(&self) -> usize {
        lock(&self.sockets).len()
    }

    /// Advances the clock to `now` and closes every socket past its time-out; drops the
    /// histories of users gone for longer than the resume window.
    pub(crate) fn sweep(&self, now: Instant) {
        let now_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
        let join_ms = self.config.join_timeout.as_millis() as u64;
        let heartbeat_ms = self.config.heartbeat_timeout.as_millis() as u64;
        let mut expired = Vec::new();
        for (_, conn) in lock(&self.sockets).iter() {
            if conn.is_joined() {
                if now_ms.saturating_sub(conn.last_seen_ms()) > heartbeat_ms {
                    expired.push((conn.clone(), CloseReason::HeartbeatTimeout));
                }
            } else if now_ms.saturating_sub(conn.accepted_ms) > join_ms {
                expired.push((conn.clone(), CloseReason::JoinRequired));
            }
        }
        // Closed outside the table's lock: waking a socket takes its own lock.
        for (conn, reason) in expired {
            conn.close(reason);
        }
        let window_ms = self.config.resume_window.as_millis() as u64;
        lock(&self.users).map.retain(|_, state| {
            !state.sockets.is_empty()
                || state.joining > 0
                || now_ms.saturating_sub(state.last_active_ms) <= window_ms
        });
    }

    /// Asks every socket to close with `reason` (shutdown).
    pub(crate) fn close_all(&self, reason: CloseReason) {
        let all: Vec<Arc<Conn>> = lock(&self.sockets).iter().map(|(_, c)| c.clone()).collect();
        for conn in all {
            conn.close(reason);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded tables stay consistent between statements: keep using them after a panic.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A join announced by [`Hub::pending_join`]; abandoned when dropped unsettled.
#[cfg(feature = "postgres")]
pub(crate) struct PendingJoin<'a> {
    hub: &'a Hub,
    user: Option<&'a str>,
}

#[cfg(feature = "postgres")]
impl PendingJoin<'_> {
    /// The join finished ([`Hub::join_numbered`]) or was abandoned by its caller.
    pub(crate) fn settled(&mut self) {
        self.user = None;
    }
}

#[cfg(feature = "postgres")]
impl Drop for PendingJoin<'_> {
    fn drop(&mut self) {
        if let Some(user) = self.user {
            self.hub.abandon_join(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hub() -> Hub {
        Hub::new(WebChatConfig {
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(5),
            ..WebChatConfig::default()
        })
    }

    fn frames(conn: &Conn) -> Vec<serde_json::Value> {
        (conn.take().0.iter())
            .map(|f| serde_json::from_str(f.as_str()).unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_sweep_closes_silent_and_unjoined_sockets_and_spares_the_rest() {
        let hub = hub();
        let start = Instant::now();
        let silent = hub.accept();
        hub.join(&silent, "a", None);
        let chatty = hub.accept();
        hub.join(&chatty, "b", None);
        let unjoined = hub.accept();
        tokio::time::advance(Duration::from_secs(6)).await;
        hub.sweep(Instant::now());
        assert_eq!(unjoined.closing(), Some(CloseReason::JoinRequired));
        assert_eq!(silent.closing(), None);
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(10)).await;
            hub.sweep(Instant::now());
            chatty.touch(hub.now_ms());
        }
        assert!(Instant::now() - start > Duration::from_secs(30));
        assert_eq!(silent.closing(), Some(CloseReason::HeartbeatTimeout));
        assert_eq!(chatty.closing(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn deliveries_reach_every_socket_and_resume_replays_once() {
        let hub = hub();
        let tab1 = hub.accept();
        let tab2 = hub.accept();
        hub.join(&tab1, "u", None);
        hub.join(&tab2, "u", None);
        let _ = (frames(&tab1), frames(&tab2));
        let delivery = hub.deliver("u", &[r#"{"text":"one"}"#], None);
        assert_eq!(
            delivery,
            Delivery {
                seqs: vec![1],
                sockets: 2
            }
        );
        for tab in [&tab1, &tab2] {
            let got = frames(tab);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0]["seq"], 1);
            assert_eq!(got[0]["message"]["text"], "one");
        }
        hub.remove(&tab2, Some("u"));
        hub.deliver("u", &[r#"{"text":"two"}"#, r#"{"text":"three"}"#], None);
        let back = hub.accept();
        let resume = |last_seq, epoch| Some(Resume { last_seq, epoch });
        assert_eq!(hub.join(&back, "u", resume(1, Some(&hub.epoch))).resumed, 2);
        let got = frames(&back);
        assert_eq!(got[0]["type"], "welcome");
        assert_eq!(got[0]["seq"], 3);
        assert_eq!(got[0]["gap"], false);
        let texts: Vec<_> = got[1..]
            .iter()
            .map(|f| f["message"]["text"].clone())
            .collect();
        assert_eq!(texts, ["two", "three"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_handler_send_is_kept_once_and_offline_histories_expire() {
        let hub = hub();
        let origin = Some((EventId::new("e1"), 0));
        assert_eq!(hub.deliver("away", &["{}"], origin.clone()).seqs, [1]);
        assert!(hub.deliver("away", &["{}"], origin).seqs.is_empty());
        tokio::time::advance(Duration::from_secs(601)).await;
        hub.sweep(Instant::now());
        let conn = hub.accept();
        hub.join(
            &conn,
            "away",
            Some(Resume {
                last_seq: 0,
                epoch: None,
            }),
        );
        assert_eq!(frames(&conn)[0]["seq"], 0, "the history is gone");
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(start_paused = true)]
    async fn a_join_dropped_while_it_reads_leaves_no_user_behind() {
        let hub = hub().number_cluster_wide();
        let pending = hub.pending_join("u");
        assert_eq!(
            hub.deliver_numbered("u", vec![(1, Utf8Bytes::from("m"))]),
            0
        );
        assert!(lock(&hub.users).map.contains_key("u"), "kept for the join");
        drop(pending);
        assert!(
            !lock(&hub.users).map.contains_key("u"),
            "abandoned with its future"
        );
        let mut settled = hub.pending_join("v");
        settled.settled();
        drop(settled);
        assert!(
            lock(&hub.users).map.contains_key("v"),
            "settled: the join's own to finish"
        );
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(start_paused = true)]
    async fn cluster_numbers_reach_each_socket_once_in_order_and_holes_are_filled() {
        let hub = hub().number_cluster_wide();
        let numbered = |seq: u64| (seq, message_frame(seq, "m", 0, &format!("{{\"n\":{seq}}}")));
        let seqs = |conn: &Conn| -> Vec<u64> {
            (frames(conn).iter())
                .map(|f| f["seq"].as_u64().unwrap())
                .collect()
        };
        let tab = hub.accept();
        hub.begin_join("u");
        // Another node's send comes while the join reads the database.
        assert_eq!(hub.deliver_numbered("u", vec![numbered(3)]), 0);
        let stored = Stored {
            latest: 1,
            rows: Vec::new(),
            gap: false,
        };
        hub.join_numbered(&tab, "u", None, &stored, "pg-x", true)
            .unwrap();
        assert_eq!(
            seqs(&tab),
            [1],
            "the welcome counts from the database; 3 waits for 2"
        );
        hub.deliver_numbered("u", vec![numbered(2)]);
        assert_eq!(seqs(&tab), [2, 3]);
        hub.deliver_numbered("u", vec![numbered(3), numbered(2)]);
        assert!(seqs(&tab).is_empty(), "seen already");

        hub.deliver_numbered("u", vec![numbered(5)]);
        assert!(hub.stalled(Duration::from_millis(100)).is_empty());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(
            hub.stalled(Duration::from_millis(100)),
            [("u".to_owned(), 3, 5)]
        );
        // Read from the database: 4.
        hub.deliver_numbered_through("u", vec![numbered(4)], Some(4));
        assert_eq!(seqs(&tab), [4, 5]);
        // A hole the database no longer has is given up.
        hub.deliver_numbered("u", vec![numbered(7)]);
        hub.deliver_numbered_through("u", Vec::new(), Some(6));
        assert_eq!(seqs(&tab), [7]);
        assert!(hub.stalled(Duration::ZERO).is_empty());

        // A second tab resumes after 4: 5 and 6 from the database, 7 from what came here.
        let back = hub.accept();
        hub.begin_join("u");
        let stored = Stored {
            latest: 6,
            rows: vec![numbered(5), numbered(6)],
            gap: false,
        };
        let resume = Some(Resume {
            last_seq: 4,
            epoch: Some("pg-x"),
        });
        assert_eq!(
            hub.join_numbered(&back, "u", resume, &stored, "pg-x", true)
                .unwrap()
                .resumed,
            3
        );
        let got = frames(&back);
        assert_eq!(
            (got[0]["seq"].as_u64(), got[0]["gap"].as_bool()),
            (Some(7), Some(false))
        );
        let resumed: Vec<u64> = got[1..]
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(resumed, [5, 6, 7]);

        // The last socket gone, the user is forgotten here: the database has the history.
        hub.remove(&tab, Some("u"));
        hub.remove(&back, Some("u"));
        assert_eq!(hub.deliver_numbered("u", vec![numbered(8)]), 0);
    }

    /// Two tabs of one user join this node at once with different resume points: the one that
    /// read the database later finishes first and moves the node's count past the other's read.
    #[cfg(feature = "postgres")]
    #[tokio::test(start_paused = true)]
    async fn a_join_overtaken_by_a_newer_one_reads_what_lies_between_and_reports_no_gap() {
        let hub = hub().number_cluster_wide();
        let numbered = |seq: u64| (seq, message_frame(seq, "m", 0, &format!("{{\"n\":{seq}}}")));
        let resume = |last_seq| {
            Some(Resume {
                last_seq,
                epoch: Some("pg-x"),
            })
        };
        let (early, late) = (hub.accept(), hub.accept());
        hub.begin_join("u");
        hub.begin_join("u");
        // The later read: 7 is the latest, the tab had 5.
        let newer = Stored {
            latest: 7,
            rows: vec![numbered(6), numbered(7)],
            gap: false,
        };
        hub.join_numbered(&late, "u", resume(5), &newer, "pg-x", true)
            .unwrap();
        assert_eq!(frames(&late).len(), 3, "the welcome, 6 and 7");
        // The earlier read: 5 was the latest, the tab had 2.
        let mut older = Stored {
            latest: 5,
            rows: vec![numbered(3), numbered(4), numbered(5)],
            gap: false,
        };
        let behind = hub
            .join_numbered(&early, "u", resume(2), &older, "pg-x", true)
            .expect_err("6 and 7 were never delivered here: read them");
        assert_eq!(
            behind,
            Behind {
                after: 5,
                through: 7
            }
        );
        assert!(frames(&early).is_empty(), "still pending");
        assert_eq!(hub.sockets_of("u"), 1);
        // Meanwhile 8 comes through the fan-out; then the rows between are read.
        hub.deliver_numbered("u", vec![numbered(8)]);
        older.latest = 7;
        older.rows.extend([numbered(6), numbered(7)]);
        assert_eq!(
            hub.join_numbered(&early, "u", resume(2), &older, "pg-x", true)
                .unwrap()
                .resumed,
            6
        );
        let got = frames(&early);
        assert_eq!(
            (got[0]["seq"].as_u64(), got[0]["gap"].as_bool()),
            (Some(8), Some(false))
        );
        let seqs: Vec<u64> = (got[1..].iter())
            .map(|f| f["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7, 8]);
        // Both joins settled: a message reaches both tabs, and nobody waits.
        hub.deliver_numbered("u", vec![numbered(9)]);
        assert_eq!(frames(&early).len(), 1);
        assert_eq!(
            (frames(&late).iter())
                .map(|f| f["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [8, 9]
        );
        assert_eq!(lock(&hub.users).map["u"].joining, 0);
    }

    /// A slow reader closed (its queue overflowed) leaves the user with no socket here; a join
    /// that comes before the closed socket's task ends counts from the database, not from what
    /// the closed socket had, and the next message reaches it at once.
    #[cfg(feature = "postgres")]
    #[tokio::test(start_paused = true)]
    async fn a_join_after_a_slow_reader_closed_counts_from_the_database() {
        let hub = Hub::new(WebChatConfig {
            max_outbound_bytes: 200,
            ..WebChatConfig::default()
        })
        .number_cluster_wide();
        let numbered = |seq: u64| (seq, message_frame(seq, "m", 0, &format!("{{\"n\":{seq}}}")));
        let slow = hub.accept();
        hub.begin_join("u");
        let empty = Stored::default();
        hub.join_numbered(&slow, "u", None, &empty, "pg-x", true)
            .unwrap();
        // Never read: the second message overflows its queue.
        hub.deliver_numbered("u", vec![numbered(1)]);
        hub.deliver_numbered("u", vec![numbered(2)]);
        assert_eq!(slow.closing(), Some(CloseReason::SlowReader));
        // Nobody here for 3 and 4: not delivered here, stored in the database.
        assert_eq!(hub.deliver_numbered("u", vec![numbered(3), numbered(4)]), 0);
        // A new tab joins before the slow one's task removed it, and reads 4 as the latest.
        let tab = hub.accept();
        hub.begin_join("u");
        let stored = Stored {
            latest: 4,
            rows: Vec::new(),
            gap: false,
        };
        hub.join_numbered(&tab, "u", None, &stored, "pg-x", true)
            .unwrap();
        assert_eq!(
            frames(&tab)[0]["seq"],
            4,
            "the welcome counts from the database"
        );
        hub.deliver_numbered("u", vec![numbered(5)]);
        let got = frames(&tab);
        assert_eq!(got.len(), 1, "5 comes at once, nothing waits for 2 to 4");
        assert_eq!(got[0]["seq"], 5);
        assert!(hub.stalled(Duration::ZERO).is_empty());
        // The slow socket's task ends now: the new tab stays.
        hub.remove(&slow, Some("u"));
        assert_eq!(hub.sockets_of("u"), 1);
    }
}
