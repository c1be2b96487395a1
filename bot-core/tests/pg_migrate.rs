//! Migrations against a real PostgreSQL: idempotent, safe when run at once, and a version 1
//! schema migrates with its queued events, those leased by an old process included.

mod support;

use bot_core::queue::Queue;

use support::pg::{fresh_pool, queue_builder};
use support::queue::pull_n;
use support::text_event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_when_run_at_once() {
    let pool = fresh_pool("migrate").await;
    // Already migrated once; three more at the same time.
    let (a, b, c) = tokio::join!(
        bot_core::pg::migrate(&pool),
        bot_core::pg::migrate(&pool),
        bot_core::pg::migrate(&pool)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let conn = pool.get().await.unwrap();
    let n: i64 = conn
        .query_one("SELECT count(*) FROM botrt_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, bot_core::pg::MIGRATIONS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_migrates_with_its_queued_events() {
    // A schema as version 1 left it, with events queued.
    let pool = bot_core::pg::PgPool::builder(support::pg::database_url())
        .schema("t_migrate_v1")
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    conn.batch_execute("DROP SCHEMA IF EXISTS t_migrate_v1 CASCADE; CREATE SCHEMA t_migrate_v1")
        .await
        .unwrap();
    let (version, name, v1) = bot_core::pg::MIGRATIONS[0];
    assert_eq!(version, 1);
    conn.batch_execute(&format!(
        "CREATE TABLE botrt_migrations (version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         {v1}
         INSERT INTO botrt_migrations (version, name) VALUES (1, '{name}');"
    ))
    .await
    .unwrap();
    // `old-1` is leased by a process of the old version, on its first attempt (a version 1
    // claim counted the attempt in the row).
    for (id, state, attempts) in [("old-1", 1i16, 1i32), ("old-2", 0, 0)] {
        let payload = serde_json::to_string(&text_event("c", id)).unwrap();
        conn.execute(
            "INSERT INTO botrt_events (lane, platform, event_id, conversation, payload, state,
                 attempts, lease_token, lease_expires_at)
             VALUES (hashtextextended('test' || chr(31) || 'c', 0), 'test', $1, 'c', $2::text::json,
                 $3::smallint, $4, CASE WHEN $3::smallint = 1 THEN 7 END,
                 CASE WHEN $3::smallint = 1 THEN now() + interval '1 hour' END)",
            &[&id, &payload, &state, &attempts],
        )
        .await
        .unwrap();
    }
    // A conversation's state from before state had scopes.
    conn.execute(
        "INSERT INTO botrt_state (platform, conversation, value, version) VALUES ('test', 'c', '{\"n\": 7}', 3)",
        &[],
    )
    .await
    .unwrap();
    drop(conn);
    bot_core::pg::migrate(&pool).await.unwrap();
    let old_state = bot_core::state::StateStore::load(
        &bot_core::pg::PgStateStore::new(&pool),
        &bot_core::state::StateKey::new(bot_core::Platform::TEST, "c"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (old_state.value["n"].as_i64(), old_state.version),
        (Some(7), 3)
    );
    let queue = queue_builder(&pool).build().unwrap();
    queue
        .push_batch(vec![text_event("c", "new")])
        .await
        .unwrap();
    let mut handled = Vec::new();
    for _ in 0..3 {
        let d = pull_n(&queue, 1).await.remove(0);
        handled.push((d.event.id.to_string(), d.attempt));
        queue.ack(&[d.lease]).await.unwrap();
    }
    // The old lease is gone: `old-1` runs again at once, as its first attempt, and first.
    assert_eq!(
        handled,
        [
            ("old-1".to_owned(), 1),
            ("old-2".to_owned(), 1),
            ("new".to_owned(), 1)
        ]
    );
    let conn = pool.get().await.unwrap();
    let versions: Vec<i32> = conn
        .query("SELECT version FROM botrt_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let all: Vec<i32> = bot_core::pg::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(versions, all);
    queue.shutdown().await;
}
