//! [`import`]: bulk loading through `COPY`.

use tokio_postgres::types::Type;

use super::sql::{IMPORT, IMPORT_COPY, IMPORT_TABLE};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::pg::error;
use crate::pg::pool::PgPool;

/// Loads `events` into the queue of `pool`'s schema in one transaction, through `COPY`: for
/// backfills and benchmarks, where pushing batch after batch would take minutes for millions of
/// events. Returns how many were loaded.
///
/// Unlike [`Queue::push_batch`](crate::Queue::push_batch) it skips deduplication (the events' ids
/// are not recorded, and an id already in the queue is loaded again) and the capacity check, and
/// wakes nobody: running queues find the events at their next poll. Events keep their order, so
/// conversations run in it; it locks its conversations as a push does, so that pushes of them
/// running meanwhile wait for its commit. The table is analysed afterwards, so that claims are
/// planned for its new size.
///
/// # Errors
///
/// [`ErrorKind::Queue`] when the database fails or an event does not serialise; nothing is
/// loaded then.
pub async fn import(pool: &PgPool, events: impl IntoIterator<Item = Event>) -> Result<u64, Error> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;

    let fail = |what: &str, e| error::db(ErrorKind::Queue, what, e);
    let (mut conn, _) = pool
        .get_measured(ErrorKind::Queue, "importing events")
        .await?;
    let tx = conn
        .transaction()
        .await
        .map_err(|e| fail("starting the import", e))?;
    tx.batch_execute(IMPORT_TABLE)
        .await
        .map_err(|e| fail("creating the import table", e))?;
    let sink = tx
        .copy_in(IMPORT_COPY)
        .await
        .map_err(|e| fail("starting the copy", e))?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT]);
    tokio::pin!(writer);
    for event in events {
        let payload = serde_json::to_string(&event).map_err(|e| {
            Error::new(ErrorKind::Queue, "postgres: event does not serialise").with_source(e)
        })?;
        writer
            .as_mut()
            .write(&[
                &event.platform.as_str(),
                &event.id.as_str(),
                &event.conversation.as_str(),
                &payload,
            ])
            .await
            .map_err(|e| fail("copying events", e))?;
    }
    writer
        .finish()
        .await
        .map_err(|e| fail("copying events", e))?;
    let loaded = tx
        .execute(IMPORT, &[])
        .await
        .map_err(|e| fail("importing events", e))?;
    tx.commit()
        .await
        .map_err(|e| fail("committing the import", e))?;
    conn.batch_execute("ANALYZE botrt_events")
        .await
        .map_err(|e| fail("analysing the queue table", e))?;
    Ok(loaded)
}
