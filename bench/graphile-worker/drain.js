// graphile-worker's batched drain, for `botload scenario queue-drain --graphile-worker`.
//
//   node drain.js load <count>   installs graphile-worker's schema afresh and adds <count> no-op jobs
//   node drain.js work           runs one worker process until SIGTERM
//
// Settings as graphile-worker's own performance test runs batched: 24 concurrent jobs per
// process, a local queue of 500 jobs, completions and failures batched (delay 0).
// The database comes from DATABASE_URL.
"use strict";

const { Pool } = require("pg");
const { run, runMigrations } = require("graphile-worker");

const connectionString =
  process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const CHUNK = 10000;

async function load(count) {
  const pool = new Pool({ connectionString, max: 1 });
  try {
    await pool.query("DROP SCHEMA IF EXISTS graphile_worker CASCADE");
    await runMigrations({ connectionString, logger: quiet() });
    for (let done = 0; done < count; done += CHUNK) {
      const n = Math.min(CHUNK, count - done);
      await pool.query(
        `SELECT graphile_worker.add_jobs(array(
           SELECT json_populate_record(null::graphile_worker.job_spec,
                    json_build_object('identifier', 'noop', 'payload', json_build_object('n', g)))
           FROM generate_series($1::int, $2::int) g))`,
        [done, done + n - 1],
      );
    }
  } finally {
    await pool.end();
  }
}

function quiet() {
  const { Logger } = require("graphile-worker");
  return new Logger(() => (level, message) => {
    if (level === "error") console.error(message);
  });
}

async function work() {
  let handled = 0;
  const runner = await run({
    connectionString,
    concurrency: 24,
    maxPoolSize: 26,
    pollInterval: 1000,
    logger: quiet(),
    preset: {
      worker: {
        localQueue: { size: 500 },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
    taskList: {
      noop: async () => {
        handled += 1;
      },
    },
  });
  console.log("ready");
  await runner.promise;
  console.log(`handled=${handled}`);
}

const [mode, arg] = process.argv.slice(2);
(mode === "load" ? load(Number(arg)) : work()).catch((e) => {
  console.error(e);
  process.exit(1);
});
