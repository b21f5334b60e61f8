#pragma once
// The one storage schema of reqbus's database sinks (SQLite and PostgreSQL) and its versioned
// migrations. Both sinks build every statement from the table definitions below, so a column
// added here reaches both databases; only the type names and placeholders differ by Dialect.
//
// Tables (migration 1):
//   requests         one row per RequestLog, request_id the primary key (UUIDv7: time-ordered,
//                    so the index grows at its end); index on inserted_at.
//   events           one row per identify/group/track, message_id the primary key.
//   counters         key -> running total (value) and when it last changed (updated_at, µs).
//   counter_flushes  one row per applied StatBuffer flush, primary key (key, window_start,
//                    node_id): the flush's idempotency id.
//   schema_migrations(version, applied_at, description): which migrations ran, and when.
// Migration 2 makes requests_inserted_at a BRIN index and migration 3 gives text primary-key
// columns the "C" collation, both on PostgreSQL only (SQLite records them and changes nothing).
//
// Idempotency: every insert is `INSERT ... ON CONFLICT DO NOTHING`; a counter flush first
// inserts into counter_flushes and adds to counters only when that row was new, in the same
// transaction, so a retried or replayed flush is counted once.
//
// Migrations are append-only: never edit a released one, add version N+1 instead. A database
// whose recorded version is newer than latest_version() belongs to a newer reqbus: sinks refuse
// it (a permanent failure) rather than write into a schema they do not know.
//
// Thread-safety: everything here is immutable data or a pure function.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace reqbus::schema {

enum class Dialect : uint8_t { sqlite, postgres };

// Logical column types; sql_type() maps them to each dialect.
enum class ColumnType : uint8_t {
  text,     // TEXT / TEXT
  json,     // TEXT / TEXT holding a JSON object ("" is stored as NULL)
  int32,    // INTEGER / INTEGER
  int64,    // INTEGER / BIGINT (µs timestamps, sequence numbers, counts)
  float64,  // REAL / DOUBLE PRECISION
};

struct Column {
  std::string_view name;
  ColumnType type;
  bool not_null;
};

struct Table {
  std::string_view name;
  std::span<const Column> columns;           // in this order in every INSERT / COPY
  std::span<const std::string_view> primary_key;
};

// Column positions (0-based) in requests_table().columns: a binder uses them by name.
enum RequestsColumn : int {
  kRequestId, kMethod, kPath, kStatusCode, kDurationMs, kUserAgent, kRemoteIp, kReferer,
  kDeviceType, kSessionId, kSessionPageViews, kInsertedAt, kRequestNodeId, kRequestSeq,
  kRequestsColumnCount
};
// Column positions in events_table().columns.
enum EventsColumn : int {
  kMessageId, kType, kUserId, kTimestamp, kEvent, kEmail, kTimezone, kAccountId, kName,
  kTraits, kProperties, kEventNodeId, kEventSeq, kEventsColumnCount
};
// Column positions in counter_flushes_table().columns.
enum CounterFlushesColumn : int { kFlushKey, kWindowStart, kFlushNodeId, kFlushCount,
                                  kCounterFlushesColumnCount };

const Table& requests_table();
const Table& events_table();
const Table& counters_table();
const Table& counter_flushes_table();

std::string_view sql_type(ColumnType type, Dialect dialect);
// "?7" (sqlite) or "$7" (postgres); n is 1-based.
std::string placeholder(Dialect dialect, int n);
// "request_id, method, ..." in the table's column order.
std::string column_list(const Table& table);

// INSERT INTO <table> (<columns>) VALUES (<rows> tuples of placeholders, numbered 1.. across
// rows) ON CONFLICT DO NOTHING. rows > 1 gives a multi-row statement (useful for PostgreSQL).
std::string insert_ignore_sql(const Table& table, Dialect dialect, int rows = 1);

// Adds to a counter: parameters (1) key, (2) amount, (3) updated_at µs. Upsert:
// INSERT INTO counters ... ON CONFLICT (key) DO UPDATE SET value = counters.value + excluded.value
std::string counter_add_sql(Dialect dialect);

// Sets a counter's value: parameters (1) key, (2) value (an upsert). updated_at (the last
// flush into it) stays as it is; a new row gets 0.
std::string counter_set_sql(Dialect dialect);

// For CounterSink::recount, with parameters (1) from µs, (2) to µs:
// SELECT status_code, device_type, count(*) FROM requests WHERE inserted_at in [from, to) GROUP BY ...
std::string count_requests_sql(Dialect dialect);
// SELECT type, count(*) FROM events WHERE timestamp in [from, to) GROUP BY type
std::string count_events_sql(Dialect dialect);
// SELECT key, value, updated_at FROM counters with (1) <= key < (2) (a prefix and its
// recount::prefix_end; an empty (2) is no upper bound) and ending with (3), `suffix_length`
// ASCII characters long, in key order; `lock`: FOR UPDATE (PostgreSQL), the rows stay locked
// until the transaction ends, taken in the order counter flushes take them.
std::string counters_in_range_sql(Dialect dialect, size_t suffix_length, bool bounded, bool lock);

// CREATE TABLE IF NOT EXISTS schema_migrations (...). Run before reading the version.
std::string create_migrations_table_sql(Dialect dialect);
// SELECT COALESCE(MAX(version), 0) FROM schema_migrations
std::string current_version_sql();
// Records a migration: parameters (1) version, (2) applied_at µs, (3) description.
std::string record_migration_sql(Dialect dialect);

struct Migration {
  int version;
  std::string_view description;
  std::vector<std::string> statements;  // run in order, in one transaction with the record
};

// Every migration, in version order (1, 2, ...), for the dialect.
std::vector<Migration> migrations(Dialect dialect);
// The highest version migrations() knows.
int latest_version();

}  // namespace reqbus::schema
