//! Wake-ups between processes: a debounced `NOTIFY` after pushes, and one `LISTEN` connection
//! outside the pool. Polling stays the fallback: a missed notification only costs latency.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use futures::StreamExt as _;
use tokio_postgres::AsyncMessage;

use super::wakeup::Wakeups;

/// Sends at most one `NOTIFY` per debounce interval, and one after the last push of a burst.
///
/// `NOTIFY` takes a lock at commit that serialises every notifying transaction, so at most one
/// notification goes out per debounce interval. A push writer carries it in its statement when
/// none went out for 50 ms past the interval, that is when the queue was idle
/// (`Wakeups::take_notification`), or sends it right behind its statement on the same connection
/// when the interval is over (`Wakeups::take_notification_now`); the pushes within the interval
/// ask this task, which sends one small notification for all of them once it is over.
pub(super) async fn run_notifier(signals: Arc<Wakeups>) {
    loop {
        tokio::select! {
            () = signals.notify_wanted.notified() => {}
            () = signals.closed.cancelled() => return,
        }
        // The pause after the last notification, this task's or one a push carried.
        loop {
            let wait = signals.quiet_for();
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = signals.closed.cancelled() => return,
            }
        }
        signals.notified_now();
        let sent = async {
            let conn = signals
                .pool
                .get_measured(crate::ErrorKind::Queue, "notifying")
                .await?
                .0;
            conn.execute_typed(
                "SELECT pg_notify($1, '')",
                &[(&signals.channel, tokio_postgres::types::Type::TEXT)],
            )
            .await
            .map_err(|e| super::error::db(crate::ErrorKind::Queue, "notifying", e))
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "postgres: notify failed; other processes will poll");
        }
        // Pushes from now on leave one permit, hence one more notification after the pause.
    }
}

/// Keeps a `LISTEN` connection open and wakes the claimer on every notification; reconnects
/// with a growing pause when the connection fails.
pub(super) async fn run_listener(signals: Arc<Wakeups>) {
    let mut failures = 0u32;
    loop {
        match listen_once(&signals).await {
            Ok(()) => return,
            Err(e) => {
                signals.listening.store(false, AtomicOrdering::Release);
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(200 << failures.min(5));
                tracing::warn!(
                    error = %e,
                    retry_in = ?pause,
                    "postgres: the LISTEN connection failed; polling until it is back"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = signals.closed.cancelled() => return,
                }
            }
        }
    }
}

/// One connection's life. `Ok` when the queue closed.
async fn listen_once(signals: &Wakeups) -> Result<(), crate::Error> {
    let fail = |e| super::error::db(crate::ErrorKind::Queue, "listening", e);
    let connect = signals.pool.config().connect(signals.pool.tls());
    let (client, mut connection) = tokio::select! {
        c = connect => c.map_err(fail)?,
        () = signals.closed.cancelled() => return Ok(()),
    };
    // The connection delivers notifications only while it is polled: drive it here.
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The channel name comes from a checked schema name: no quoting needed.
    let statement = format!("LISTEN {}", signals.channel);
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            r = &mut listen, if !listening => {
                r.map_err(fail)?;
                listening = true;
                signals.listening.store(true, AtomicOrdering::Release);
                // Pushes made while not listening were missed: look now.
                signals.wake.notify_one();
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    signals.notifications.fetch_add(1, AtomicOrdering::Relaxed);
                    signals.wake.notify_one();
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(fail(e)),
                None => {
                    return Err(crate::Error::new(
                        crate::ErrorKind::Queue,
                        "postgres: the server closed the LISTEN connection",
                    ));
                }
            },
            () = signals.closed.cancelled() => {
                signals.listening.store(false, AtomicOrdering::Release);
                return Ok(());
            }
        }
    }
}
