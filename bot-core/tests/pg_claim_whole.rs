//! Migration 9's claim over both slots at once (`p_whole`, what the claimer asks for once a claim
//! came back short, as every claim of an idle queue does), against a real PostgreSQL: it hands
//! out only conversation heads whose conversations hold no lease, in id order; it takes the
//! oldest events of both slots in one query; a claim that finds a slot taken by another claim
//! looks at the other slot only, as the slot claims do; and from the front, its lane probes are
//! bounded only for candidates written before the front was read. Since migration 10 it takes a
//! generic plan, kept until the table's statistics change, that reads through the indexes
//! whatever the statistics said when it was made. Also migration 12's front read, whose figures
//! prove the floor that full claims and front reads start at.

mod support;

use std::time::Duration;

use bot_core::pg::PgPool;
use bot_core::pg::tokio_postgres::{self, AsyncMessage, GenericClient, NoTls};
use support::pg::{database_url, eventually, fresh_pool, insert_raw, lock_lane};
use support::queue::DEADLINE;
use support::text_event;

/// Runs a claim over both slots for up to `limit` events: the ids it leased, in order.
async fn whole_claim(db: &impl GenericClient, limit: i32, token: i64) -> Vec<i64> {
    whole_claim_from(db, limit, token, 0, 0).await
}

/// [`whole_claim`] between full ones: from the `front` last read, with the lane probes of the
/// candidates written before it was read bounded by it (`safe`, migration 8); 0 and 0 for a full
/// claim.
async fn whole_claim_from(
    db: &impl GenericClient,
    limit: i32,
    token: i64,
    front: i64,
    safe: i64,
) -> Vec<i64> {
    let mut ids: Vec<i64> = db
        .query(
            "SELECT id FROM botrt_claim($1, 60000, $2, true, false, $3, $3, $4, true)",
            &[&limit, &token, &front, &safe],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort_unstable();
    ids
}

/// Inserts an event of `conversation` as a push would, but without its lane lock or dedup key:
/// its id.
async fn insert(db: &impl GenericClient, conversation: &str, id: &str) -> i64 {
    insert_raw(db, &text_event(conversation, id)).await
}

/// Acknowledges the event `id` as the queue does: the event goes, then its lease.
async fn ack(db: &impl GenericClient, id: i64) {
    db.execute("DELETE FROM botrt_events WHERE id = $1", &[&id])
        .await
        .unwrap();
    db.execute("DELETE FROM botrt_leases WHERE id = $1", &[&id])
        .await
        .unwrap();
}

/// Two conversation names in claim slot 0, and two in slot 1.
async fn two_in_each_slot(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    (
        conversations_in_slot(pool, 0, 2).await,
        conversations_in_slot(pool, 1, 2).await,
    )
}

/// `n` conversation names whose lanes fall in claim slot `slot` (the lane's lowest bit).
async fn conversations_in_slot(pool: &PgPool, slot: i64, n: usize) -> Vec<String> {
    let conn = pool.get().await.unwrap();
    let platform = text_event("x", "x").platform.as_str().to_owned();
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("s{slot}-{i}");
        let bit: i64 = conn
            .query_one(
                "SELECT hashtextextended($1 || chr(31) || $2, 0) & 1",
                &[&platform, &name],
            )
            .await
            .unwrap()
            .get(0);
        if bit == slot {
            names.push(name);
            if names.len() == n {
                break;
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_claim_hands_out_only_heads_of_conversations_holding_no_lease() {
    let pool = fresh_pool("claim_whole_order").await;
    let db = pool.get().await.unwrap();
    let a1 = insert(&**db, "a", "a1").await;
    let b1 = insert(&**db, "b", "b1").await;
    let a2 = insert(&**db, "a", "a2").await;
    let b2 = insert(&**db, "b", "b2").await;
    let c1 = insert(&**db, "c", "c1").await;
    // The heads only: "a2" and "b2" wait for their conversations' older events.
    assert_eq!(whole_claim(&**db, 10, 1).await, [a1, b1, c1]);
    // Leased, not done: nothing more, though the claim asks for ten.
    assert!(whole_claim(&**db, 10, 2).await.is_empty());
    ack(&**db, a1).await;
    // "a2" is its conversation's head now; "b2" still waits for "b1".
    assert_eq!(whole_claim(&**db, 10, 3).await, [a2]);
    // "b1" goes back to wait for a retry an hour away, its lease gone: "b2" still waits for it.
    db.execute(
        "UPDATE botrt_events SET run_at = now() + interval '1 hour' WHERE id = $1",
        &[&b1],
    )
    .await
    .unwrap();
    db.execute("DELETE FROM botrt_leases WHERE id = $1", &[&b1])
        .await
        .unwrap();
    assert!(
        whole_claim(&**db, 10, 4).await.is_empty(),
        "b2 was handed out before b1"
    );
    ack(&**db, b1).await;
    assert_eq!(whole_claim(&**db, 10, 5).await, [b2]);
    // The conversation's ordered lease alone holds its next event: "c1" gone and its lease
    // still there, as within an acknowledgement's statement (the event goes before the lease).
    let c2 = insert(&**db, "c", "c2").await;
    db.execute("DELETE FROM botrt_events WHERE id = $1", &[&c1])
        .await
        .unwrap();
    assert!(
        whole_claim(&**db, 10, 6).await.is_empty(),
        "c2 was handed out while c1's lease is held"
    );
    db.execute("DELETE FROM botrt_leases WHERE id = $1", &[&c1])
        .await
        .unwrap();
    assert_eq!(whole_claim(&**db, 10, 7).await, [c2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_claim_takes_the_oldest_events_of_both_slots() {
    let pool = fresh_pool("claim_whole_oldest").await;
    let (zero, one) = two_in_each_slot(&pool).await;
    let db = pool.get().await.unwrap();
    let first = insert(&**db, &zero[0], "first").await;
    let second = insert(&**db, &one[0], "second").await;
    let third = insert(&**db, &zero[1], "third").await;
    let fourth = insert(&**db, &one[1], "fourth").await;
    // One query over every conversation: the two oldest, whichever slots they are in (a claim
    // of either slot alone, whichever it tried first, takes "first" and "third" or "second" and
    // "fourth").
    assert_eq!(whole_claim(&**db, 2, 1).await, [first, second]);
    assert_eq!(whole_claim(&**db, 2, 2).await, [third, fourth]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_claim_leaves_a_slot_held_by_another_claim_alone() {
    let pool = fresh_pool("claim_whole_slots").await;
    let (zero, one) = two_in_each_slot(&pool).await;
    let db = pool.get().await.unwrap();
    let mut in_zero = Vec::new();
    let mut in_one = Vec::new();
    for (i, (z, o)) in zero.iter().zip(&one).enumerate() {
        in_zero.push(insert(&**db, z, &format!("z{i}")).await);
        in_one.push(insert(&**db, o, &format!("o{i}")).await);
    }
    // Another process's claim holds slot 1 (its transaction runs).
    let mut other = pool.get().await.unwrap();
    let holding = other.transaction().await.unwrap();
    holding
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('botrt.claim.' || current_schema()), 1)",
            &[],
        )
        .await
        .unwrap();
    // This claim holds slot 0 (taken for the whole query, then kept) and looks at it only, as a
    // claim of one slot does; it does not wait for slot 1.
    let claimed = tokio::time::timeout(Duration::from_secs(5), whole_claim(&**db, 10, 1))
        .await
        .expect("a whole claim that cannot have both slots does not wait for the other");
    assert_eq!(claimed, in_zero);
    holding.rollback().await.unwrap();
    assert_eq!(whole_claim(&**db, 10, 2).await, in_one);
}

/// A claim's leases are inserted without a conflict check (migration 13): the claim slots keep
/// claims of one conversation apart. A lease inserted by something that holds no slot (a process
/// of a version before migration 7, a hand-made insert), committed after a claim's snapshot,
/// still cannot make a conversation's second lease: the unique index fails the claim that meets
/// it, which leases nothing, and the conversation keeps its one lease. Both claims are tried: the
/// one over every conversation, and a slot's (the one a whole claim hands over to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_without_a_claim_slot_fails_the_claim_that_meets_it() {
    let pool = fresh_pool("claim_conflict").await;
    for (whole, conversation) in [(true, "w"), (false, "s")] {
        let db = pool.get().await.unwrap();
        let first = insert(&**db, conversation, &format!("{conversation}1")).await;
        let lane: i64 = db
            .query_one("SELECT lane FROM botrt_events WHERE id = $1", &[&first])
            .await
            .unwrap()
            .get(0);
        // The slot-less lease of the conversation (on another id, so that only the
        // conversation's unique index can refuse the claim's), not yet committed: invisible to
        // the claim's snapshot, and the event not locked, so the claim takes the event and then
        // meets the lease's index entry.
        let mut other = pool.get().await.unwrap();
        let outside = other.transaction().await.unwrap();
        outside
            .execute(
                "INSERT INTO botrt_leases (id, lane, ordered, token, expires_at)
                 VALUES ($1, $2, true, 99, now() + interval '1 minute')",
                &[&(first + 1_000_000), &lane],
            )
            .await
            .unwrap();
        let claimer = pool.get().await.unwrap();
        let pid = support::pg::backend_pid(&claimer).await;
        let claim = async {
            let sql = if whole {
                "SELECT id FROM botrt_claim(10, 60000, 1, true, false, 0, 0, 0, true)"
            } else {
                "SELECT id FROM botrt_claim(10, 60000, 1, true, false, 0, 0, 0)"
            };
            claimer.query(sql, &[]).await
        };
        let commit_when_waited_for = async {
            eventually(
                "the claim to wait for the other lease",
                DEADLINE,
                || async {
                    db.query_one(
                        "SELECT count(*) FROM pg_stat_activity
                     WHERE pid = $1 AND wait_event_type = 'Lock'",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    .eq(&1)
                    .then_some(())
                },
            )
            .await;
            outside.commit().await.unwrap();
        };
        let (claimed, ()) = tokio::join!(claim, commit_when_waited_for);
        let err = claimed.expect_err("the claim met a committed lease of its conversation");
        let refused = err.as_db_error().expect("the server refused the claim");
        assert_eq!(
            (refused.code(), refused.constraint()),
            (
                &tokio_postgres::error::SqlState::UNIQUE_VIOLATION,
                Some("botrt_leases_lane")
            ),
            "{err}"
        );
        let leases: Vec<i64> = db
            .query("SELECT token FROM botrt_leases WHERE lane = $1", &[&lane])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(leases, [99], "the conversation holds the other lease only");
        // The next claim sees the lease and leaves the conversation alone.
        assert!(whole_claim(&**db, 10, 2).await.is_empty());
        db.execute("DELETE FROM botrt_events WHERE id = $1", &[&first])
            .await
            .unwrap();
        db.execute("DELETE FROM botrt_leases WHERE lane = $1", &[&lane])
            .await
            .unwrap();
    }
}

/// The whole query bounds a candidate's lane probe at the front only for candidates written
/// before the front was read: an event committed under the front since still holds back its
/// conversation's next event, pushed after the read (bounded by the front alone, the claim would
/// hand out "a2" while "a1", older, waits under the front).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_claim_from_the_front_holds_an_event_behind_an_older_one_committed_under_it() {
    let pool = fresh_pool("claim_whole_front").await;
    let db = pool.get().await.unwrap();
    let mut holder = pool.get().await.unwrap();
    let held = holder.transaction().await.unwrap();
    let a1 = insert_raw(&*held, &text_event("a", "a1")).await;
    let c1 = insert(&**db, "c", "c1").await;
    let front = db
        .query_one("SELECT safe, front FROM botrt_front(0)", &[])
        .await
        .unwrap();
    let (safe, front): (i64, i64) = (front.get(0), front.get(1));
    assert_eq!(
        front, c1,
        "the front does not see the event still being written"
    );
    held.commit().await.unwrap();
    let a2 = insert(&**db, "a", "a2").await;
    assert_eq!(
        whole_claim_from(&**db, 10, 1, front, safe).await,
        [c1],
        "a2 was handed out while a1, older, waits under the front"
    );
    // The next full claim takes "a1"; "a2" comes once "a1" is done.
    assert_eq!(whole_claim(&**db, 10, 2).await, [a1]);
    ack(&**db, a1).await;
    assert_eq!(whole_claim(&**db, 10, 3).await, [a2]);
}

/// The plans `auto_explain` reported for the whole claim's query, on a connection of the test's
/// own (so that its notices can be read) in `schema`: a claim on the empty queue (its table
/// vacuumed and analysed first when `analysed`, as autovacuum leaves an idle queue), then one once
/// `fill` events wait. Returns the two claims' ids, the first event's id and the plans.
async fn whole_claim_plans(
    schema: &str,
    analysed: bool,
    fill: i64,
) -> (Vec<i64>, Vec<i64>, i64, Vec<String>) {
    let (client, mut connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .expect("PostgreSQL is reachable");
    let mut notices = Vec::new();
    let read = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notice(notice) = message.expect("the connection holds") {
                notices.push(notice.message().to_owned());
            }
        }
    };
    let claims = async move {
        client
            .batch_execute(&format!("SET search_path = {schema}"))
            .await
            .unwrap();
        // No analyse of autovacuum's between the claims (it would re-make the plan).
        client
            .batch_execute("ALTER TABLE botrt_events SET (autovacuum_enabled = false)")
            .await
            .unwrap();
        if analysed {
            // Statistics that say the table is empty: the state in which a plan made from them
            // went wrong before (a probe through the primary key).
            client
                .batch_execute("VACUUM ANALYZE botrt_events")
                .await
                .unwrap();
        }
        // Every plan of the function's statements, the nested ones included, as a notice.
        client
            .batch_execute(
                "LOAD 'auto_explain';
                 SET auto_explain.log_min_duration = 0;
                 SET auto_explain.log_nested_statements = on;
                 SET auto_explain.log_level = notice;",
            )
            .await
            .expect("auto_explain loads (LOAD and its settings need a superuser in DATABASE_URL)");
        let empty = whole_claim(&client, 64, 1).await;
        client
            .execute(
                "INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
                 SELECT hashtextextended('test' || chr(31) || 'c' || g, 0), 'test', 'e' || g,
                        'c' || g, '{}'::json
                 FROM generate_series(1, $1::bigint) g",
                &[&fill],
            )
            .await
            .unwrap();
        let first: i64 = client
            .query_one("SELECT min(id) FROM botrt_events", &[])
            .await
            .unwrap()
            .get(0);
        let full = whole_claim(&client, 1_000, 2).await;
        // The connection ends with its client, and with it the notices' stream.
        drop(client);
        (empty, full, first)
    };
    let ((empty, full, first), ()) = tokio::join!(claims, read);
    let plans = notices
        .into_iter()
        .filter(|n| n.contains("WITH c AS MATERIALIZED"))
        .collect();
    (empty, full, first, plans)
}

/// The line of the plan node `node` (a pattern of its first line) and the line after it, its
/// index condition when it has one.
fn node<'a>(plan: &'a str, node: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = plan.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(node))
        .unwrap_or_else(|| panic!("no `{node}` in the plan: {plan}"));
    (lines[at], lines.get(at + 1).map_or("", |l| l.trim()))
}

/// Checks a whole claim's plans from [`whole_claim_plans`]: generic, every read of the events
/// through an index condition, the same plan on the empty queue as on the filled one; and the
/// filled queue's claim right.
async fn assert_generic_plan_through_the_indexes(test: &str, analysed: bool) {
    let pool = fresh_pool(test).await;
    let (empty, full, first, plans) = whole_claim_plans(pool.schema(), analysed, 20_000).await;
    assert!(empty.is_empty());
    // The claim of the filled queue hands out its 1,000 oldest events (each its conversation's
    // head).
    assert_eq!(full, (first..first + 1_000).collect::<Vec<_>>());
    assert_eq!(plans.len(), 2, "one plan reported per claim: {plans:#?}");
    for plan in &plans {
        // The candidates, through the primary key from the parameter `p_from`: a generic plan
        // (a custom plan, made at each call, shows the value, `'0'::bigint`, there).
        let (_, candidates) = node(plan, "using botrt_events_pkey on botrt_events e ");
        assert!(candidates.starts_with("Index Cond: (id >= $"), "{plan}");
        // Each candidate's conversation probed through the lane index, on the candidate's lane
        // and up to its id: a probe that read the index whole, filtering at the join, or one
        // through the primary key from the front, reads every older event for each candidate.
        let (_, probe) = node(plan, "using botrt_events_lane on botrt_events p");
        assert!(
            probe.starts_with("Index Cond:")
                && probe.contains("< ROW(e.lane, e.id)")
                && probe.contains(">= ROW(e.lane, CASE"),
            "{plan}"
        );
        // The claimed rows come from the locked candidates themselves (migration 13): no join of
        // the candidates to their leases, nor a lookup of each lease's event, which a plan made
        // on an empty table could run as a comparison of every pair.
        assert!(!plan.contains("botrt_events ev"), "{plan}");
        assert!(
            !plan.contains("Merge Join") && !plan.contains("Hash Join"),
            "{plan}"
        );
        assert!(!plan.contains("Join Filter"), "{plan}");
        assert!(!plan.contains("Seq Scan on botrt_events"), "{plan}");
    }
    // The same plan both times: made on the empty queue, used for the full one.
    let shape = |plan: &str| {
        plan.lines()
            .filter(|l| l.contains("->"))
            .map(|l| l.split("(cost=").next().unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&plans[0]), shape(&plans[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_claims_plan_is_generic_and_reads_through_the_indexes_as_the_queue_fills() {
    assert_generic_plan_through_the_indexes("claim_whole_plan", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_claims_plan_made_on_an_analysed_empty_queue_reads_through_the_indexes() {
    assert_generic_plan_through_the_indexes("claim_whole_plan_analysed", true).await;
}

/// A front read of migration 12 from `floor`: its `safe`, `front`, `low` and `mark`.
async fn front_read(db: &impl GenericClient, floor: i64) -> (i64, i64, i64, i64) {
    let row = db
        .query_one(
            "SELECT safe, front, low, mark FROM botrt_front($1)",
            &[&floor],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// A front read's `low` is the smallest id it sees from the floor on, or, on a queue that holds
/// none, the id the sequence hands out next: the first event of a fresh queue (whose sequence
/// has handed out nothing yet) and the next one after an acknowledged event both get exactly
/// that id, so a floor raised to it leaves them above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_reads_low_is_the_next_id_of_an_empty_queue_and_its_front_otherwise() {
    let pool = fresh_pool("front_low").await;
    let db = pool.get().await.unwrap();
    let (_, front, low, _) = front_read(&**db, 0).await;
    assert_eq!(front, 0, "an empty queue's front");
    let first = insert(&**db, "a", "a1").await;
    assert_eq!(low, first, "a fresh sequence hands out its start next");
    let second = insert(&**db, "a", "a2").await;
    let (_, front, low, _) = front_read(&**db, 0).await;
    assert_eq!((front, low), (first, first));
    // From a floor above the first event, the second is the smallest seen.
    let (_, front, low, _) = front_read(&**db, first + 1).await;
    assert_eq!((front, low), (second, second));
    ack(&**db, first).await;
    ack(&**db, second).await;
    let (_, front, low, _) = front_read(&**db, second).await;
    assert_eq!(front, 0);
    assert_eq!(low, second + 1);
    assert_eq!(insert(&**db, "b", "b1").await, low);
}

/// The floor's proof (migration 12) rests on this: a transaction that took its id before a front
/// read has an id under the read's `mark`, so while it runs the `safe` of every later read stays
/// at or under that mark, and once it has ended a later read's `safe` passes the mark. Here the
/// held push's event is the queue's only one, so the read sees an empty queue and its `low` (the
/// sequence's next id) lies above that event: proven too early, the floor would leave it under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_before_a_front_read_keeps_later_reads_safe_under_its_mark() {
    let pool = fresh_pool("front_mark").await;
    let db = pool.get().await.unwrap();
    // A transaction that takes its id first and ends after the read, before the later ones: the
    // snapshot's xmax (the newest ended transaction's id, plus one) is at most its id, so a
    // "mark" taken from the snapshot would lie under the held transaction's id, and the reads
    // after this one ends would pass it while the held one runs.
    let mut other = pool.get().await.unwrap();
    let early = other.transaction().await.unwrap();
    early
        .execute("INSERT INTO botrt_lanes (lane) VALUES (-1)", &[])
        .await
        .unwrap();
    let mut holder = pool.get().await.unwrap();
    let held = holder.transaction().await.unwrap();
    let event = text_event("a", "a1");
    // As a push: the conversation's lock row, then the event.
    lock_lane(&*held, &event).await;
    let held_id = insert_raw(&*held, &event).await;
    let (safe, front, low, mark) = front_read(&**db, 0).await;
    assert!(safe < mark, "the mark is taken after the snapshot");
    assert_eq!(front, 0, "the held event is not seen");
    assert_eq!(low, held_id + 1, "the sequence's next id");
    early.commit().await.unwrap();
    for _ in 0..3 {
        let (later_safe, _, later_low, _) = front_read(&**db, 0).await;
        assert!(
            later_safe <= mark,
            "a read while the held transaction runs proves nothing: {later_safe} > {mark}"
        );
        assert_eq!(later_low, held_id + 1);
    }
    held.commit().await.unwrap();
    // Other tests' transactions may hold `safe` back a moment longer.
    let later_low = eventually("a read whose safe passes the mark", DEADLINE, || async {
        let (later_safe, _, later_low, _) = front_read(&**db, 0).await;
        (later_safe > mark).then_some(later_low)
    })
    .await;
    // The proven floor, the smaller low of the two reads, lies at the held event.
    assert_eq!(later_low.min(low), held_id);
}

/// Buffers that `EXPLAIN (ANALYZE, BUFFERS)` counts for a front read from `floor` (the function's
/// own statement included).
async fn front_read_buffers(db: &impl GenericClient, floor: i64) -> i64 {
    // The plan comes as `json`, read as text through the simple protocol.
    let rows = db
        .simple_query(&format!(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM botrt_front({floor})"
        ))
        .await
        .unwrap();
    let text = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a plan");
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    let top = &plan[0]["Plan"];
    ["Shared Hit Blocks", "Shared Read Blocks"]
        .iter()
        .map(|k| top[k].as_i64().expect("buffer counts"))
        .sum()
}

/// A front read from the floor starts at it: it does not step over the primary key's entries of
/// the events acknowledged under it (kept until a vacuum), which a read from 0 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_read_from_the_floor_steps_over_no_acknowledged_event() {
    let pool = fresh_pool("front_floor_reads").await;
    let db = pool.get().await.unwrap();
    db.batch_execute(
        "ALTER TABLE botrt_events SET (autovacuum_enabled = false);
         INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
         SELECT hashtextextended('test' || chr(31) || 'c' || g, 0), 'test', 'e' || g,
                'c' || g, '{}'::json
         FROM generate_series(1, 20000) g;
         DELETE FROM botrt_events WHERE id < (SELECT max(id) FROM botrt_events);",
    )
    .await
    .unwrap();
    let last: i64 = db
        .query_one("SELECT max(id) FROM botrt_events", &[])
        .await
        .unwrap()
        .get(0);
    // The first reads mark the dead entries and warm the function's plan and the catalogs.
    for floor in [0, last, 0, last] {
        assert_eq!(front_read(&**db, floor).await.1, last);
    }
    let from_zero = front_read_buffers(&**db, 0).await;
    let from_floor = front_read_buffers(&**db, last).await;
    assert!(
        from_floor <= 8,
        "a read from the floor touched {from_floor} buffers"
    );
    assert!(
        from_zero >= 40,
        "a read from 0 steps over the 19,999 acknowledged entries: {from_zero} buffers"
    );
}
