#include "analytics/sinks/schema.hpp"

#include <array>

namespace reqbus::schema {
namespace {

using T = ColumnType;

constexpr std::array<Column, kRequestsColumnCount> kRequestsColumns{{
    {"request_id", T::text, true},
    {"method", T::text, true},
    {"path", T::text, true},
    {"status_code", T::int32, true},
    {"duration_ms", T::float64, true},
    {"user_agent", T::text, true},
    {"remote_ip", T::text, true},
    {"referer", T::text, true},
    {"device_type", T::text, true},
    {"session_id", T::text, true},
    {"session_page_views", T::int64, true},  // uint32 in RequestLog: needs 64 bits signed
    {"inserted_at", T::int64, true},
    {"node_id", T::text, true},
    {"seq", T::int64, true},
}};
constexpr std::array<std::string_view, 1> kRequestsKey{"request_id"};

constexpr std::array<Column, kEventsColumnCount> kEventsColumns{{
    {"message_id", T::text, true},
    {"type", T::text, true},  // "identify", "group" or "track"
    {"user_id", T::text, true},
    {"timestamp", T::int64, true},
    {"event", T::text, false},       // track
    {"email", T::text, false},       // identify
    {"timezone", T::text, false},    // identify
    {"account_id", T::text, false},  // group
    {"name", T::text, false},        // group
    {"traits", T::json, false},      // identify, group
    {"properties", T::json, false},  // track
    {"node_id", T::text, true},
    {"seq", T::int64, true},
}};
constexpr std::array<std::string_view, 1> kEventsKey{"message_id"};

constexpr std::array<Column, 3> kCountersColumns{{
    {"key", T::text, true},
    {"value", T::int64, true},
    {"updated_at", T::int64, true},
}};
constexpr std::array<std::string_view, 1> kCountersKey{"key"};

constexpr std::array<Column, kCounterFlushesColumnCount> kCounterFlushesColumns{{
    {"key", T::text, true},
    {"window_start", T::int64, true},
    {"node_id", T::text, true},
    {"count", T::int64, true},
}};
constexpr std::array<std::string_view, 3> kCounterFlushesKey{"key", "window_start", "node_id"};

const Table kRequests{"requests", kRequestsColumns, kRequestsKey};
const Table kEvents{"events", kEventsColumns, kEventsKey};
const Table kCounters{"counters", kCountersColumns, kCountersKey};
const Table kCounterFlushes{"counter_flushes", kCounterFlushesColumns, kCounterFlushesKey};

std::string create_table_sql(const Table& table, Dialect dialect) {
  std::string sql = "CREATE TABLE IF NOT EXISTS ";
  sql += table.name;
  sql += " (\n";
  for (const Column& c : table.columns) {
    sql += "  ";
    sql += c.name;
    sql += ' ';
    sql += sql_type(c.type, dialect);
    if (c.not_null) sql += " NOT NULL";
    sql += ",\n";
  }
  sql += "  PRIMARY KEY (";
  for (size_t i = 0; i < table.primary_key.size(); ++i) {
    if (i) sql += ", ";
    sql += table.primary_key[i];
  }
  sql += "))";
  return sql;
}

}  // namespace

const Table& requests_table() { return kRequests; }
const Table& events_table() { return kEvents; }
const Table& counters_table() { return kCounters; }
const Table& counter_flushes_table() { return kCounterFlushes; }

std::string_view sql_type(ColumnType type, Dialect dialect) {
  const bool pg = dialect == Dialect::postgres;
  switch (type) {
    case T::text:
    case T::json: return "TEXT";
    case T::int32: return "INTEGER";
    case T::int64: return pg ? "BIGINT" : "INTEGER";
    case T::float64: return pg ? "DOUBLE PRECISION" : "REAL";
  }
  return "TEXT";
}

std::string placeholder(Dialect dialect, int n) {
  std::string out(1, dialect == Dialect::postgres ? '$' : '?');  // not "$" + ...: g++ 12 -O3
  out += std::to_string(n);                                       // warns falsely (-Wrestrict)
  return out;
}

std::string column_list(const Table& table) {
  std::string out;
  for (size_t i = 0; i < table.columns.size(); ++i) {
    if (i) out += ", ";
    out += table.columns[i].name;
  }
  return out;
}

std::string insert_ignore_sql(const Table& table, Dialect dialect, int rows) {
  std::string sql = "INSERT INTO ";
  sql += table.name;
  sql += " (" + column_list(table) + ") VALUES ";
  const int width = static_cast<int>(table.columns.size());
  for (int r = 0; r < rows; ++r) {
    sql += r ? ", (" : "(";
    for (int c = 0; c < width; ++c) {
      if (c) sql += ", ";
      sql += placeholder(dialect, r * width + c + 1);
    }
    sql += ')';
  }
  sql += " ON CONFLICT DO NOTHING";
  return sql;
}

std::string counter_add_sql(Dialect dialect) {
  return "INSERT INTO counters (key, value, updated_at) VALUES (" + placeholder(dialect, 1) +
         ", " + placeholder(dialect, 2) + ", " + placeholder(dialect, 3) +
         ") ON CONFLICT (key) DO UPDATE SET value = counters.value + excluded.value, "
         "updated_at = excluded.updated_at";
}

std::string counter_set_sql(Dialect dialect) {
  return "INSERT INTO counters (key, value, updated_at) VALUES (" + placeholder(dialect, 1) + ", " +
         placeholder(dialect, 2) + ", 0) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
}

std::string count_requests_sql(Dialect dialect) {
  return "SELECT status_code, device_type, count(*) FROM requests WHERE inserted_at >= " + placeholder(dialect, 1) +
         " AND inserted_at < " + placeholder(dialect, 2) + " GROUP BY status_code, device_type";
}

std::string count_events_sql(Dialect dialect) {
  return "SELECT type, count(*) FROM events WHERE timestamp >= " + placeholder(dialect, 1) + " AND timestamp < " +
         placeholder(dialect, 2) + " GROUP BY type";
}

std::string counters_in_range_sql(Dialect dialect, size_t suffix_length, bool bounded, bool lock) {
  const std::string n = std::to_string(suffix_length);
  std::string sql = "SELECT key, value, updated_at FROM counters WHERE key >= " + placeholder(dialect, 1);
  if (bounded) sql += " AND key < " + placeholder(dialect, 2);
  sql += dialect == Dialect::postgres ? " AND right(key, " + n + ") = " : " AND substr(key, -" + n + ") = ";
  sql += placeholder(dialect, bounded ? 3 : 2);
  sql += " ORDER BY key";
  if (lock) sql += " FOR UPDATE";
  return sql;
}

std::string create_migrations_table_sql(Dialect dialect) {
  return std::string("CREATE TABLE IF NOT EXISTS schema_migrations (\n"
                     "  version INTEGER PRIMARY KEY,\n"
                     "  applied_at ") +
         std::string(sql_type(T::int64, dialect)) +
         " NOT NULL,\n"
         "  description TEXT NOT NULL)";
}

std::string current_version_sql() {
  return "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
}

std::string record_migration_sql(Dialect dialect) {
  return "INSERT INTO schema_migrations (version, applied_at, description) VALUES (" +
         placeholder(dialect, 1) + ", " + placeholder(dialect, 2) + ", " +
         placeholder(dialect, 3) + ")";
}

std::vector<Migration> migrations(Dialect dialect) {
  std::vector<Migration> out;
  out.push_back(Migration{
      1,
      "requests, events, counters and counter_flushes",
      {
          create_table_sql(kRequests, dialect),
          "CREATE INDEX IF NOT EXISTS requests_inserted_at ON requests (inserted_at)",
          create_table_sql(kEvents, dialect),
          create_table_sql(kCounters, dialect),
          create_table_sql(kCounterFlushes, dialect),
      }});
  // requests grows in inserted_at order (batches from several nodes interleave by seconds), so
  // a BRIN index (min/max per 128 pages) serves time-range queries at a fraction of a
  // B-tree's cost per insert: postgres_sink_bench loads ~15 % faster with it
  // (docs/BENCHMARKS.md). SQLite has only B-trees: nothing to do there.
  Migration brin{2, "requests_inserted_at as a BRIN index (PostgreSQL)", {}};
  if (dialect == Dialect::postgres) {
    brin.statements = {"DROP INDEX IF EXISTS requests_inserted_at",
                       "CREATE INDEX requests_inserted_at ON requests USING brin (inserted_at)"};
  }
  out.push_back(std::move(brin));
  // Text keys compared byte by byte on PostgreSQL. In a database created with a language
  // locale (en_US.UTF-8, Debian's usual), every comparison in a primary-key index went through
  // strcoll(): 1 M time-ordered request ids loaded 20-25 % faster with COLLATE "C", and a replay's
  // ON CONFLICT checks ~20 % faster (docs/BENCHMARKS.md). Keys are ids, never sorted for people.
  // SQLite already compares them with memcmp (BINARY). Rebuilds each key's index: on a large
  // existing table, the first start of this version holds the table's lock for that long.
  Migration collation{3, "text primary-key columns COLLATE \"C\" (PostgreSQL)", {}};
  if (dialect == Dialect::postgres) {
    for (const Table* t : {&kRequests, &kEvents, &kCounters, &kCounterFlushes})
      for (const std::string_view key : t->primary_key)
        for (const Column& c : t->columns)
          if (c.name == key && c.type == T::text)
            collation.statements.push_back("ALTER TABLE " + std::string(t->name) + " ALTER COLUMN " +
                                           std::string(c.name) + " TYPE TEXT COLLATE \"C\"");
  }
  out.push_back(std::move(collation));
  // `reqbus recount` counts a day's events by their timestamp: without an index, a scan of the
  // whole table (on SQLite while holding the write lock that keeps every node's flush waiting).
  // A B-tree: Segment timestamps come from clients, in no particular order, so BRIN would not do.
  out.push_back(Migration{4, "events_timestamp index (recount)",
                          {"CREATE INDEX IF NOT EXISTS events_timestamp ON events (timestamp)"}});
  return out;
}

int latest_version() { return 4; }

}  // namespace reqbus::schema
