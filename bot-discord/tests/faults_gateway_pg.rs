//! Fault suite, Discord gateway on a real `PgQueue`: the user's scenario of issue 13. One shard
//! on PostgreSQL, connected as a dedicated non-superuser role whose INSERT privilege on the
//! queue's table is revoked for a while in the middle of a dispatch stream, then granted again.
//!
//! Needs PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`, a
//! superuser, trust auth for the role): without it the test fails, never skips.
#![allow(clippy::disallowed_methods)] // the shard and the ops server run in spawned tasks

mod support;

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bot_core::pg::{self, PgPool, PgQueue, tokio_postgres};
use support::{QueueSwitch, queue_fails_mid_stream};

const SCHEMA: &str = "t_discord_faults_pg";
const ROLE: &str = "t_discord_faults_pg_bot";

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Revokes and grants INSERT on the queue's table as the superuser.
struct Privileges {
    admin: PgPool,
}

#[async_trait]
impl QueueSwitch for Privileges {
    async fn set_failing(&self, failing: bool) {
        let statement = if failing {
            format!("REVOKE INSERT ON {SCHEMA}.botrt_events FROM {ROLE}")
        } else {
            format!("GRANT INSERT ON {SCHEMA}.botrt_events TO {ROLE}")
        };
        let conn = self.admin.get().await.expect("admin connection");
        conn.batch_execute(&statement).await.expect(&statement);
    }

    fn refused(&self) -> Option<u64> {
        None
    }
}

/// The bot's pool: the same server and database as `DATABASE_URL`, as the role.
fn role_url() -> String {
    let config = tokio_postgres::Config::from_str(&database_url()).expect("DATABASE_URL parses");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or("postgres");
    format!("host={host} port={port} user={ROLE} dbname={dbname} sslmode=disable")
}

#[tokio::test]
async fn insert_revoked_mid_stream_holds_the_session_and_loses_nothing() {
    let url = database_url();
    let admin = PgPool::builder(&url)
        .max_size(2)
        .create_timeout(Duration::from_secs(5))
        .build()
        .expect("DATABASE_URL parses");
    let conn = admin.get().await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url} ({e}); start it or set DATABASE_URL")
    });
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
         DO $$ BEGIN CREATE ROLE {ROLE} LOGIN NOSUPERUSER;
         EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
    ))
    .await
    .expect("a fresh schema and the role");
    let migrated = PgPool::builder(&url)
        .schema(SCHEMA)
        .max_size(1)
        .build()
        .unwrap();
    pg::migrate(&migrated).await.expect("migration");
    conn.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA {SCHEMA} TO {ROLE};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {ROLE};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {ROLE};"
    ))
    .await
    .expect("grants");

    let pool = PgPool::builder(role_url())
        .schema(SCHEMA)
        .max_size(4)
        .build()
        .expect("the role's pool");
    let queue = PgQueue::builder(&pool)
        .poll_interval(Duration::from_millis(50))
        .rescue_interval(Duration::from_millis(200))
        .build()
        .expect("queue");
    let switch = Privileges {
        admin: admin.clone(),
    };
    queue_fails_mid_stream(Arc::new(queue), &switch, false, 256).await;

    conn.batch_execute(&format!(
        "DROP SCHEMA {SCHEMA} CASCADE; DROP OWNED BY {ROLE}; DROP ROLE {ROLE};"
    ))
    .await
    .expect("clean up");
}
