//! `PgStateStore` and `cx.db()` against a real PostgreSQL.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use bot_core::pg::{PgPool, PgStateStore};
use bot_core::state::{StateKey, StateStore};
use bot_core::{Bot, BoxError, Context, Event, Limits, Platform};
use serde_json::json;
use support::pg::{eventually, fresh_pool, fresh_pool_with, queue_builder};
use support::text_event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_writes_check_the_version_across_store_instances() {
    let pool = fresh_pool("state").await;
    // Two stores on one table: two processes.
    let a = PgStateStore::new(&pool);
    let b = PgStateStore::new(&pool);
    let key = StateKey::new(Platform::TEST, "c1");
    assert!(a.load(&key).await.unwrap().is_none());
    assert_eq!(a.save(&key, json!({"n": 1}), None).await.unwrap(), 1);
    // A second "first" write loses.
    assert!(
        b.save(&key, json!({"n": 9}), None)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert_eq!(b.save(&key, json!({"n": 2}), Some(1)).await.unwrap(), 2);
    // A write based on the old version loses.
    assert!(
        a.save(&key, json!({"n": 3}), Some(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    let got = a.load(&key).await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (json!({"n": 2}), 2));
    assert!(a.delete(&key, 1).await.unwrap_err().is_conflict());
    assert!(a.delete(&key, 2).await.unwrap());
    assert!(!a.delete(&key, 2).await.unwrap());
    assert!(b.load(&key).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_separate_documents_and_expire_after_their_ttl() {
    let pool = fresh_pool("dlg_state_scopes").await;
    let store = PgStateStore::new(&pool);
    let keys = [
        StateKey::new(Platform::DISCORD, "chan"),
        StateKey::user(Platform::DISCORD, "chan"),
        StateKey::user_in_conversation(Platform::DISCORD, "chan", "alice"),
        StateKey::user_in_conversation(Platform::DISCORD, "chan", "bob"),
        StateKey::user(Platform::LINE, "chan"),
        StateKey::app("chan"),
    ];
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(store.save(key, json!(n), None).await.unwrap(), 1, "{key}");
    }
    for (n, key) in keys.iter().enumerate() {
        let got = store.load(key).await.unwrap().unwrap();
        assert_eq!((got.value, got.version), (json!(n), 1), "{key}");
    }

    // A document with a time-to-live reads as absent once it passed.
    let key = StateKey::user(Platform::TEST, "u");
    let v1 = (store.save_expiring(
        &key,
        json!("soon gone"),
        None,
        Some(Duration::from_millis(200)),
    ))
    .await
    .unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().version, v1);
    eventually(
        "the document to expire",
        Duration::from_secs(10),
        || async { store.load(&key).await.unwrap().is_none().then_some(()) },
    )
    .await;
    // A writer that read it before lost it; a first write replaces it, counting on.
    assert!(
        store
            .save(&key, json!("stale"), Some(v1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    let v2 = store.save(&key, json!("fresh"), None).await.unwrap();
    assert_eq!(v2, v1 + 1);
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().value,
        json!("fresh")
    );
    // Written without a time-to-live, it stays; pruning deletes only the expired.
    let gone = StateKey::app("gone");
    (store.save_expiring(&gone, json!(1), None, Some(Duration::from_millis(1))))
        .await
        .unwrap();
    eventually("the app key to expire", Duration::from_secs(10), || async {
        store.load(&gone).await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(store.prune_expired().await.unwrap(), 1);
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().value,
        json!("fresh")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_through_the_context_lose_nothing() {
    let pool = fresh_pool("state_ctx").await;
    let queue = Arc::new(
        queue_builder(&pool)
            .ordering(bot_core::Ordering::Unordered)
            .build()
            .unwrap(),
    );
    let bot = Bot::builder()
        .adapter(support::JsonAdapter)
        .queue(queue.clone())
        .state_store(Arc::new(PgStateStore::new(&pool)))
        .handler(|cx: Context, _e: Event| async move {
            cx.conversation_state()
                .update(|n: &mut u64| *n += 1)
                .await
                .map(|_| ())
        })
        .build()
        .unwrap();
    bot.start();
    // Unordered: the 20 events of one conversation race for its state.
    let events: Vec<Event> = (0..20)
        .map(|i| text_event("c1", &format!("e{i}")))
        .collect();
    bot.ingress().submit(events).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("all handled");
    let store = PgStateStore::new(&pool);
    let got = store
        .load(&StateKey::new(Platform::TEST, "c1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, json!(20));
    bot.shutdown().await;
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_long_tasks_share_ten_connections_without_time_outs() {
    let pool: PgPool = fresh_pool_with("pool_wait", |b| b.max_size(10)).await;
    let queue = Arc::new(queue_builder(&pool).build().unwrap());
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (failed, done) = (failed.clone(), done.clone());
        move |cx: Context, _e: Event| {
            let (failed, done) = (failed.clone(), done.clone());
            async move {
                let result = async {
                    let conn = cx.db().await?;
                    // A long statement: the connection is held throughout.
                    conn.execute("SELECT pg_sleep(0.1)", &[]).await?;
                    Ok::<(), BoxError>(())
                }
                .await;
                if result.is_err() {
                    failed.fetch_add(1, AtomicOrdering::SeqCst);
                }
                done.fetch_add(1, AtomicOrdering::SeqCst);
                result
            }
        }
    };
    let bot = Bot::builder()
        .queue(queue.clone())
        .database(pool.clone())
        .limits(Limits {
            max_in_flight: 64,
            ..Limits::default()
        })
        .handler(handler)
        .build()
        .unwrap();
    bot.start();
    // Fifty conversations, so that all fifty run at once.
    let events: Vec<Event> = (0..50)
        .map(|i| text_event(&format!("c{i}"), &format!("e{i}")))
        .collect();
    bot.ingress().submit(events).await.unwrap();
    eventually("fifty handlers done", Duration::from_secs(60), || async {
        (done.load(AtomicOrdering::SeqCst) >= 50).then_some(())
    })
    .await;
    assert_eq!(failed.load(AtomicOrdering::SeqCst), 0, "no handler failed");
    let stats = pool.stats();
    assert_eq!(stats.timeouts, 0);
    assert!(stats.max_wait >= Duration::from_millis(50), "{stats:?}");
    let text = bot.telemetry().render_prometheus();
    let count = text
        .lines()
        .find(|l| l.starts_with("bot_db_pool_wait_seconds_count"))
        .expect("the pool wait histogram is exported");
    assert!(count.ends_with(" 50"), "{count}");
    assert!(
        text.contains("db_client_connection_max"),
        "pool gauges exported"
    );
    bot.shutdown().await;
    queue.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_check_compares_pools_with_max_connections() {
    let pool = fresh_pool_with("capacity", |b| b.max_size(4)).await;
    let fits = pool.check_capacity(2).await.unwrap();
    assert_eq!(fits.needed, 10);
    assert!(fits.fits());
    let too_many = pool.check_capacity(100_000).await.unwrap();
    assert!(!too_many.fits());
}
