//! A PostgreSQL queue that refuses a push for a reason outside the "unavailable" list (here an
//! unmigrated schema, SQLSTATE 42P01) is answered 503 with `Retry-After`, never 500, so that the
//! platform delivers the events again once the database is fixed.

mod support;

use std::sync::Arc;

use bot_core::pg::{PgPool, PgQueue};
use bot_core::{Bot, Context, Error, Event};
use http::StatusCode;
use support::pg::database_url;
use support::{JsonAdapter, send_to, text_event, webhook_request};

async fn ignore(_: Context, _: Event) -> Result<(), Error> {
    Ok(())
}

#[tokio::test]
async fn a_push_the_database_refuses_is_answered_503_with_retry_after() {
    let url = database_url();
    let schema = "t_pg_status_unmigrated";
    let admin = PgPool::builder(&url).max_size(1).build().unwrap();
    admin
        .get()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url} ({e})"))
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .unwrap();
    // No migration: the queue's tables do not exist.
    let pool = PgPool::builder(&url).schema(schema).build().unwrap();
    let queue = Arc::new(PgQueue::builder(&pool).listen(false).build().unwrap());
    let bot = Bot::builder()
        .adapter(JsonAdapter)
        .queue(queue.clone())
        .handler(ignore)
        .build()
        .unwrap();
    let res = send_to(&bot, webhook_request(&[text_event("c", "e1")])).await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert_eq!(res.retry_after(), Some(5));
    let metrics = bot.telemetry().render_prometheus();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bot_webhook_rejected") && l.contains("reason=\"queue_error\"")),
        "{metrics}"
    );
    queue.shutdown().await;
}
