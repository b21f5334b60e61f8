#pragma once
// PostgresSink: stores batches of RequestLogs and identify/group/track events, and counter
// flushes, in PostgreSQL through libpq.
//
// Loading: a batch of one kind (only RequestLogs, or only identify/group/track events) is sent
// as one binary `COPY <table> FROM STDIN (FORMAT binary)`: PostgreSQL's fastest loader, one
// implicit transaction, no text escaping (every field travels length-prefixed). COPY cannot skip
// rows already stored, so when one is (a replayed or retried batch), the server aborts the whole
// COPY with unique_violation and the batch is loaded again by `INSERT ... SELECT * FROM
// unnest($1, ...) ON CONFLICT DO NOTHING`, every column one binary array parameter; the next 16
// writes then go straight to that statement, as replays come in runs. A batch holding both
// kinds is one such INSERT with two data-modifying CTEs, so it is still all or nothing.
// bench/postgres_sink_bench.cpp measures both loaders against COPY -> temp table -> INSERT ...
// ON CONFLICT and against one INSERT per event (docs/BENCHMARKS.md).
// Idempotent: a request_id / message_id already stored is skipped and counted as a duplicate.
// Counters: a flush is inserted into counter_flushes keyed by (key, window_start, node_id);
// only flushes that were new are added to `counters`, in the same statement.
// Schema: created on first use with versioned migrations (schema_migrations), under an
// advisory lock so several nodes may start at once.
// Errors: a lost connection, a refused connection, a timeout, or a server-side transient state
// (SQLSTATE classes 08, 40, 53, 57, 58) or a read-only session (25006: a primary demoted in a
// failover) -> retry_later, and the connection is reopened on the next write; authentication, a missing database or role, schema errors, or data PostgreSQL
// cannot hold in TEXT (invalid UTF-8, NUL bytes: SQLSTATE class 22) -> failure (permanent).
// Setup errors (bad options, a conninfo that does not parse) throw reqbus::Error at
// construction; the constructor does not connect.
// Thread-safety: write() and write_counters() may be called from many threads at once; each
// call takes one connection from a pool of `connections` (opened lazily), so up to that many
// writes run in parallel. stats() is safe from any thread.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reqbus/clock.hpp"
#include "reqbus/counter_sink.hpp"
#include "reqbus/sink.hpp"

namespace reqbus {

struct PostgresSinkOptions {
  // libpq connection string or URI ("host=db port=5432 dbname=analytics user=reqbus", or
  // "postgresql://..."). Required. Checked with PQconninfoParse at construction.
  std::string conninfo;
  // Pool size: the most writes that run in parallel, each on its own connection. Default 2
  // (two connections loaded ~1.5x one on a 2-core machine; more only add server load).
  uint32_t connections = 2;
  // Bound on opening one connection (TCP + authentication). Default 5000 ms. A write also never
  // waits past its own `timeout`, whichever is shorter.
  std::chrono::milliseconds connect_timeout{5000};
  // Server-side statement_timeout set on each connection, so a statement the client gave up on
  // does not run forever. Default 30000 ms (the Batcher's import_timeout). 0 = none.
  std::chrono::milliseconds statement_timeout{30000};
  // Create or migrate the schema on first use. Default true. false: the tables must exist.
  bool create_schema = true;
  // Load single-kind batches with binary COPY, falling back to INSERT ... ON CONFLICT DO
  // NOTHING for a batch holding a row stored already. Default true. false: always the INSERT
  // (for a role without COPY rights on a pooler that does not pass COPY through).
  bool copy = true;
  // Wall-clock source for counters.updated_at. Default: system_clock().
  std::shared_ptr<Clock> clock;
};

struct PostgresSinkStats {
  uint64_t batches = 0;        // write()/write_counters() calls that succeeded
  uint64_t rows_inserted = 0;  // request/event rows new to the database
  uint64_t duplicates = 0;     // request/event rows already present (replays, resends): skipped
  uint64_t counter_flushes_applied = 0;    // flushes added to counters
  uint64_t counter_flushes_duplicate = 0;  // flushes already applied earlier
  uint64_t errors = 0;         // calls that returned retry_later or failure
  uint64_t reconnects = 0;     // connections opened again after one was lost or dropped
  uint64_t copies = 0;         // batches loaded by COPY
  uint64_t copy_fallbacks = 0; // COPYs aborted by a row stored already, then loaded by INSERT
  // Text values stored with U+FFFD in place of bytes PostgreSQL's text cannot hold (NUL, bytes
  // that are no valid UTF-8): written, rather than failing the whole batch (SQLSTATE 22021).
  // Counted when their write succeeds, also in rows the store already held (a resend). SqliteSink
  // stores such bytes as they are.
  uint64_t text_replaced = 0;
};

class PostgresSink final : public Sink, public CounterSink {
 public:
  explicit PostgresSink(PostgresSinkOptions options);
  ~PostgresSink() override;
  PostgresSink(const PostgresSink&) = delete;
  PostgresSink& operator=(const PostgresSink&) = delete;

  // Connects and makes sure the schema is there, as the first write would, writing nothing:
  // success; retry_later when the server cannot be reached now (down, refusing, timing out);
  // failure when no write will succeed (a wrong database, role, password or privilege, a schema
  // newer than this reqbus). What `reqbus serve` asks at start, so that a misconfigured store
  // stops the node with one line instead of dead-lettering every event it is given.
  WriteResult check(std::chrono::milliseconds timeout);

  // Stores the batch (all or nothing) within `timeout`: waiting for a free connection,
  // connecting, creating the schema on first use and the statement all count against it.
  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override;
  // The same, telling which events were new: a COPY stores all or nothing; INSERT ... ON
  // CONFLICT DO NOTHING returns the ids it stored.
  WriteResult write_telling_new(const std::vector<Message>& batch, std::chrono::milliseconds timeout,
                                std::vector<bool>& is_new) override;
  WriteResult write_counters(const std::vector<CounterFlush>& flushes,
                             std::chrono::milliseconds timeout) override;
  // Writes and write_counters in progress on other threads stop waiting within ~50 ms and
  // return retry_later; a connection stopped mid-statement is closed (a transaction not yet
  // committed is rolled back; a statement the server was already running on its own may still
  // commit, as after a timeout). Thread-safe.
  void abort_writes() noexcept override;
  // "postgres:<host>:<port>/<dbname>" (never the password).
  std::string name() const override;
  // CounterSink::recount in one REPEATABLE READ transaction: the span's owned counters are
  // read FOR UPDATE first (only they: other days' flushes go on), then the rows are counted in
  // the same snapshot without holding writers off; a node's flush into those counters waits
  // for the recount and adds on top of it. One that committed after the snapshot fails the
  // recount with a serialization error (retry_later: run it again). A dry run locks nothing.
  WriteResult recount(const CounterRecount& recount, std::vector<CounterChange>& changes,
                      std::chrono::milliseconds timeout) override;

  PostgresSinkStats stats() const noexcept;

 private:
  struct Impl;  // analytics/sinks/postgres_sink.cpp
  std::unique_ptr<Impl> impl_;
};

}  // namespace reqbus
