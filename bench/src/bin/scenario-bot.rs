//! The bot of botload's `slow-api` and `db-pool` scenarios (botload starts it; run by hand with
//! `cargo run --release -p bench --bin scenario-bot -- --help`).
//!
//! A LINE bot on the memory queue whose handler is set by flags: `reply` answers every event
//! through the LINE client (the real outbound path, to the API base given), `db` runs one upsert
//! through `cx.db()` first, `db-only` only the upsert. The Reply API's 2,000 calls/s limit is
//! lifted and the client speaks HTTP/2 without TLS (`http2_prior_knowledge`), so that tens of
//! thousands of outstanding API calls share one connection, as they share one TLS connection
//! to LINE in production.

use std::net::SocketAddr;
use std::time::Duration;

use bot_core::pg::PgPool;
use bot_core::telemetry::Logging;
use bot_core::{Bot, Context, Error, ErrorKind, Event, Limits};
use bot_line::ConfigureApi;
use bot_line::Line;
use bot_line::client::RateLimits;
use clap::{Parser, ValueEnum};

/// With `--features mimalloc`: the allocator an application may choose (BENCHMARKS.md compares).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The upsert of `--query upsert`: one counter row per conversation.
const UPSERT: &str = "INSERT INTO botload_counters (conversation, events) VALUES ($1, 1) \
     ON CONFLICT (conversation) DO UPDATE SET events = botload_counters.events + 1";
/// The read of `--query select`: the conversation's row, by primary key.
const SELECT: &str = "SELECT events FROM botload_counters WHERE conversation = $1";

/// A LINE bot for botload's scenarios.
#[derive(Debug, Parser)]
#[command(name = "scenario-bot", version, about)]
struct Args {
    /// Where to serve the webhook, /metrics and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The LINE channel secret webhooks are signed with.
    #[arg(long)]
    secret: String,
    /// The LINE channel access token.
    #[arg(long)]
    token: String,
    /// The LINE API base (botload's fake).
    #[arg(long)]
    api_base: String,
    /// What each event's handler does.
    #[arg(long, value_enum, default_value_t = Work::Reply)]
    handler: Work,
    /// Handlers running at once.
    #[arg(long, default_value_t = 50_000)]
    max_in_flight: usize,
    /// Events the memory queue buffers beyond those running.
    #[arg(long, default_value_t = 20_000)]
    queue_capacity: usize,
    /// The PostgreSQL database of the `db` handlers.
    #[arg(long)]
    database_url: Option<String>,
    /// Connections in the pool behind `cx.db()`.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// The query of the `db` handlers.
    #[arg(long, value_enum, default_value_t = Query::Select)]
    query: Query,
    /// How long a handler waits for a connection before failing, in seconds.
    #[arg(long, default_value_t = 30)]
    pool_wait_seconds: u64,
}

/// What each event's handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Work {
    /// `cx.reply("ok")` through the LINE client.
    Reply,
    /// One upsert through `cx.db()`, the connection given back, then the reply.
    Db,
    /// Only the upsert.
    DbOnly,
}

/// The query of the `db` handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Query {
    /// Reads the conversation's row by primary key (botload fills the table first).
    Select,
    /// Adds one to the conversation's counter row: a write and a commit per event.
    Upsert,
}

async fn reply(cx: Context, _event: Event) -> Result<(), Error> {
    cx.reply("ok").await
}

/// One query; the connection goes back to the pool before anything slow happens.
async fn query(cx: &Context, event: &Event) -> Result<(), Error> {
    let (sql, what) = match cx.state::<Query>() {
        Some(Query::Upsert) => (UPSERT, "the upsert failed"),
        _ => (SELECT, "the select failed"),
    };
    let conn = cx.db().await?;
    // Prepared once per connection: one round trip per query instead of two, no re-planning.
    let statement = conn
        .prepare_cached(sql)
        .await
        .map_err(|e| Error::new(ErrorKind::Other, what).with_source(e))?;
    conn.execute(&statement, &[&event.conversation.as_str()])
        .await
        .map_err(|e| Error::new(ErrorKind::Other, what).with_source(e))?;
    Ok(())
}

async fn db(cx: Context, event: Event) -> Result<(), Error> {
    query(&cx, &event).await?;
    cx.reply("ok").await
}

async fn db_only(cx: Context, event: Event) -> Result<(), Error> {
    query(&cx, &event).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    // One HTTP/2 connection (the client's built-in transport, h2c to the local fake) carries
    // every outstanding call; its windows are large enough that small replies never wait for a
    // window update.
    let line = Line::builder(args.secret.as_str(), args.token.as_str())
        .api_base(&args.api_base)
        .client(|c| {
            let c = if args.api_base.starts_with("http://") {
                c.http2_prior_knowledge()
            } else {
                c
            };
            c.rate_limits(RateLimits {
                reply_per_second: 1_000_000,
                ..RateLimits::default()
            })
        })
        .build()?;
    let limits = Limits {
        max_in_flight: args.max_in_flight,
        queue_capacity: args.queue_capacity,
        ..Limits::default()
    };
    let mut builder = Bot::builder()
        .adapter(line)
        .limits(limits)
        .state(args.query);
    builder = match args.handler {
        Work::Reply => builder.handler(reply),
        Work::Db => builder.handler(db),
        Work::DbOnly => builder.handler(db_only),
    };
    let pool = match (args.handler, &args.database_url) {
        (Work::Reply, _) => None,
        (_, None) => return Err("scenario-bot: the db handlers need --database-url".into()),
        (_, Some(url)) => Some(
            PgPool::builder(url)
                .max_size(args.pool_size)
                .wait_timeout(Duration::from_secs(args.pool_wait_seconds))
                .application_name("scenario-bot")
                .build()?,
        ),
    };
    if let Some(pool) = &pool {
        builder = builder.database(pool.clone());
    }
    let bot = builder.build()?;
    if let Some(pool) = &pool {
        pool.register_metrics(bot.telemetry());
    }
    bot.serve(args.addr).await?;
    Ok(())
}
