#pragma once
// SqliteSink: the embedded default store. Writes RequestLogs, identify/group/track events and
// counter flushes into one SQLite file (schema: analytics/sinks/schema.hpp, created on first
// use, versioned migrations).
//
// Each write() is one `BEGIN IMMEDIATE ... COMMIT` with cached prepared statements;
// every row is `INSERT ... ON CONFLICT DO NOTHING`, so a replayed or duplicated request_id /
// message_id is stored once, and a counter flush is applied once per (key, window_start,
// node_id). How each SQLite error maps to a WriteResult:
//   SQLITE_BUSY / LOCKED (another writer), disk full, I/O errors, out of memory,
//   the write's own deadline passing                       -> retry_later(reason, retry_after)
//   a file that became unusable after open() succeeded once: read-only, cannot be opened,
//   no permission, corrupt or not a database               -> retry_later (the store is down
//                                                             until an operator repairs it; a
//                                                             Batcher spools meanwhile)
//   the same at open() (the file never worked: a configuration error), a schema newer than
//   this reqbus or with missing columns, an event SQLite refuses -> failure(reason)
// A write still running when its timeout passes is interrupted (a progress handler checks the
// clock every 1000 SQLite VM steps) and rolled back: retry_later. After any error other than
// BUSY/LOCKED the connection is closed and reopened by the next write, so a repaired or
// replaced file is picked up.
//
// Thread-safety: all methods are safe from any thread. One connection, guarded by a mutex:
// concurrent writes are serialised (a writer waits for the mutex at most its timeout, then
// gets retry_later). Several SqliteSinks — or processes — may share a file: SQLite's locking
// (WAL + busy timeout) arbitrates.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reqbus/clock.hpp"
#include "reqbus/counter_sink.hpp"
#include "reqbus/sink.hpp"

namespace reqbus {

struct SqliteSinkOptions {
  // The database file. Required. Created (with the schema) when missing; its directory must
  // exist.
  std::string path;

  // PRAGMA synchronous. Default normal: with WAL, a commit is durable against a process
  // crash, and against power loss up to the last checkpoint — SQLite's recommended WAL
  // setting (measured here: ~5× faster than full per commit). full fsyncs every commit.
  enum class Synchronous : uint8_t { off, normal, full };
  Synchronous synchronous = Synchronous::normal;

  // Upper bound on waiting for another connection's write lock (SQLite's busy timeout). Each
  // write waits at most min(busy_timeout, its own timeout). Default 5000 ms.
  std::chrono::milliseconds busy_timeout{5000};

  // The floor a retry_later result asks the caller to wait before retrying. Default 100 ms.
  std::chrono::milliseconds retry_after{100};

  // Page cache per connection, KiB (PRAGMA cache_size = -N). Default 16384 (16 MiB): large
  // enough that index pages of a batch stay in memory.
  int64_t cache_size_kib = 16384;

  // Page size in bytes for a NEW database file (PRAGMA page_size; a power of two, 512..65536);
  // an existing file keeps the size it was created with. Default 16384: request rows are
  // ~300 bytes and their keys time-ordered, so larger pages mean fewer page splits and
  // B-tree levels (measured here: ~15 % more rows/s than SQLite's 4096; docs/BENCHMARKS.md).
  int page_size = 16384;

  // Cap on the database size in bytes (PRAGMA max_page_count); reaching it behaves like a full
  // disk (retry_later "database or disk is full"). 0 = no cap (default).
  int64_t max_database_bytes = 0;

  // Create the file and the schema when missing, and apply pending migrations (default). false:
  // open only an existing store of this reqbus's schema version, creating and changing nothing
  // (a missing file, another database or version is a permanent failure): for tools that read
  // or repair a store (`reqbus recount`).
  bool create = true;

  // Wall time for counters.updated_at and schema_migrations.applied_at, and the monotonic
  // clock for write deadlines. nullptr (default) = the system clock.
  std::shared_ptr<Clock> clock;
};

// Counters for metrics; read with stats().
struct SqliteSinkStats {
  uint64_t batches = 0;                    // write() calls that committed
  uint64_t rows_inserted = 0;              // rows new to the database
  uint64_t duplicates = 0;                 // rows already present (replays, duplicates)
  uint64_t counter_flushes_applied = 0;    // flushes added to counters
  uint64_t counter_flushes_duplicate = 0;  // flushes already applied earlier
  uint64_t retries = 0;                    // writes that returned retry_later
  uint64_t errors = 0;                     // writes that returned failure
};

class SqliteSink final : public Sink, public CounterSink {
 public:
  // Validates options (throws reqbus::Error{invalid_argument} naming the field). Does not touch
  // the file: the first write — or open() — opens it and applies pending migrations.
  explicit SqliteSink(SqliteSinkOptions options);
  ~SqliteSink() override;
  SqliteSink(const SqliteSink&) = delete;
  SqliteSink& operator=(const SqliteSink&) = delete;

  // Stores the batch in one transaction: all of it or none of it.
  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override;
  // The same, telling which events were new (rows already there are found by their rowids, only
  // in a statement that stored some of its rows and not others).
  WriteResult write_telling_new(const std::vector<Message>& batch, std::chrono::milliseconds timeout,
                                std::vector<bool>& is_new) override;
  // Applies each flush once per (key, window_start, node_id), in one transaction.
  WriteResult write_counters(const std::vector<CounterFlush>& flushes,
                             std::chrono::milliseconds timeout) override;
  // The write in progress on another thread stops at its next progress check (every 1000
  // SQLite VM steps) or while it waits for a lock, and is rolled back: retry_later. Thread-safe.
  void abort_writes() noexcept override;
  // "sqlite:<path>"
  std::string name() const override;
  // CounterSink::recount in one BEGIN IMMEDIATE transaction (other writers wait, up to their
  // busy timeout; a dry run reads in a deferred one and blocks nobody). The requests are read
  // through the inserted_at index; events are scanned (no index on their timestamp).
  WriteResult recount(const CounterRecount& recount, std::vector<CounterChange>& changes,
                      std::chrono::milliseconds timeout) override;

  // Opens the database and applies pending migrations now (to fail fast at startup). A failure
  // is returned, not logged: the caller says it.
  WriteResult open(std::chrono::milliseconds timeout);
  // Closes the connection (a later write reopens it).
  void close();

  SqliteSinkStats stats() const;
  const SqliteSinkOptions& options() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace reqbus
