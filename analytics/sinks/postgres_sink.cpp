// PostgresSink: see include/reqbus/postgres_sink.hpp for the contract.
//
// Every column of a batch travels as one binary array parameter of a prepared
// `INSERT ... SELECT * FROM unnest($1, $2, ...) ON CONFLICT DO NOTHING`: one round trip per
// batch, no escaping. libpq is used in non-blocking mode and every wait is a poll() bounded by
// the write's deadline, so a hung server costs at most the caller's timeout.
#include "reqbus/postgres_sink.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string_view>

#include "analytics/sinks/postgres_detail.hpp"
#include "analytics/sinks/recount.hpp"
#include "analytics/sinks/timed_gate.hpp"
#include "analytics/sinks/schema.hpp"
#include "reqbus/error.hpp"

namespace reqbus {
namespace {

using namespace postgres_detail;
using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

// A COPY that met a row stored already; the batch is loaded again with ON CONFLICT DO NOTHING.
const std::string kUniqueViolation = "23505";
// After such a fallback, this many writes go straight to INSERT ... ON CONFLICT.
constexpr int64_t kCopyPauseWrites = 16;

// Arbitrary constant for pg_advisory_xact_lock: serialises schema migrations across nodes.
constexpr int64_t kMigrationLockId = 0x7265716275730001;  // "reqbus" + 1

// Which prepared statements exist on a connection (bit per statement).
enum Statement : uint32_t { kInsertRequests = 1, kInsertEvents = 2, kInsertBoth = 4, kCounters = 8 };

struct Connection {
  PGconn* conn = nullptr;
  uint32_t prepared = 0;  // Statement bits
  bool ever_opened = false;
  void close() {
    if (conn) PQfinish(conn);
    conn = nullptr;
    prepared = 0;
  }
};

// The abort_writes() generation the calling thread's write started under (set by
// with_connection for its duration): a wait ends early, as if its deadline had passed, once
// the sink's generation moves on.
struct AbortWatch {
  const std::atomic<uint64_t>* generation = nullptr;
  uint64_t started = 0;
  bool aborted() const { return generation && generation->load(std::memory_order_relaxed) != started; }
};
thread_local AbortWatch current_write;
// How often a wait looks at current_write: the longest abort_writes() waits for a write.
constexpr std::chrono::milliseconds kAbortPoll{50};

// Waits until the socket is readable (or writable when `for_write`), or the deadline passes,
// or the write is aborted.
bool wait_socket(PGconn* conn, bool for_write, Deadline deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0 || current_write.aborted()) return false;
    pollfd pfd{PQsocket(conn), static_cast<short>(for_write ? POLLOUT | POLLIN : POLLIN), 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, kAbortPoll.count())));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let libpq report the socket error
  }
}

// libpq's messages span lines ("...failed: Connection refused\n\tIs the server running...");
// a reason is one line.
std::string one_line(std::string s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\n' || ch == '\t' || ch == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += ch;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void ignore_notice(void*, const PGresult*) {}  // "relation ... already exists, skipping"

}  // namespace

struct PostgresSink::Impl {
  PostgresSinkOptions options;
  std::string name;
  std::string sql_requests, sql_events, sql_both, sql_counters, sql_copy_requests, sql_copy_events;

  std::mutex pool_mu;
  std::condition_variable pool_cv;
  std::vector<Connection> pool;  // guarded by pool_mu while a slot is free; a leased slot
                                 // belongs to its lessee alone
  std::vector<size_t> free_slots;  // guarded by pool_mu

  detail::TimedGate schema_gate;  // not std::timed_mutex: TSan misreads its try_lock_for
  std::atomic<bool> schema_ready{false};

  std::atomic<uint64_t> batches{0}, rows_inserted{0}, duplicates{0}, counter_flushes_applied{0},
      counter_flushes_duplicate{0}, errors{0}, reconnects{0}, copies{0}, copy_fallbacks{0}, text_replaced{0};
  // abort_writes() moves it on; a write in progress notices within kAbortPoll.
  std::atomic<uint64_t> abort_generation{0};
  static constexpr const char* kAborted = "postgres: write abandoned (abort_writes: the writer is shutting down)";
  // Writes left that skip COPY after one found a duplicate: replays tend to come in runs.
  std::atomic<int64_t> copy_pause{0};

  // The outcome of one attempt; `drop` closes the connection (lost, timed out, unknown state).
  struct Failure {
    Failure() = default;
    Failure(bool transient_, bool drop_, std::string reason_)
        : transient(transient_), drop(drop_), reason(std::move(reason_)) {}
    bool transient = true;
    bool drop = false;
    std::string reason;
    std::string sqlstate;  // the server's, when it reported the error
  };
  using Results = std::vector<PgResult>;

  // --- pool -------------------------------------------------------------------------------
  std::optional<size_t> acquire(Deadline deadline) {
    std::unique_lock lock(pool_mu);
    while (free_slots.empty()) {
      if (SteadyClock::now() >= deadline || current_write.aborted()) return {};
      pool_cv.wait_until(lock, std::min(deadline, SteadyClock::now() + kAbortPoll));
    }
    size_t slot = free_slots.back();
    free_slots.pop_back();
    return slot;
  }
  void release(size_t slot) {
    {
      std::lock_guard lock(pool_mu);
      free_slots.push_back(slot);
    }
    pool_cv.notify_one();
  }

  // --- connecting ---------------------------------------------------------------------------
  std::optional<Failure> open(Connection& c, Deadline deadline) {
    c.close();
    deadline = std::min(deadline, SteadyClock::now() + options.connect_timeout);
    const char* keys[] = {"dbname", "fallback_application_name", nullptr};
    const char* values[] = {options.conninfo.c_str(), "reqbus", nullptr};
    c.conn = PQconnectStartParams(keys, values, 1);
    if (c.conn == nullptr) return Failure{true, true, "postgres: out of memory"};
    PostgresPollingStatusType status = PGRES_POLLING_WRITING;
    while (PQstatus(c.conn) != CONNECTION_BAD && status != PGRES_POLLING_OK &&
           status != PGRES_POLLING_FAILED) {
      if (!wait_socket(c.conn, status == PGRES_POLLING_WRITING, deadline)) {
        c.close();
        return Failure{true, true, "postgres: connecting timed out"};
      }
      status = PQconnectPoll(c.conn);
    }
    if (PQstatus(c.conn) != CONNECTION_OK) {
      std::string message = one_line(PQerrorMessage(c.conn));
      c.close();
      return Failure{!is_permanent_connect_error(message), true, "postgres: connect: " + message};
    }
    if (c.ever_opened) reconnects.fetch_add(1, std::memory_order_relaxed);
    c.ever_opened = true;
    PQsetnonblocking(c.conn, 1);
    PQsetNoticeReceiver(c.conn, ignore_notice, nullptr);
    if (options.statement_timeout.count() > 0) {
      std::string set = "SET statement_timeout = " + std::to_string(options.statement_timeout.count());
      if (auto failed = exec(c, deadline, set)) {
        c.close();  // never keep a connection without its statement_timeout
        failed->drop = true;
        return failed;
      }
    }
    return {};
  }

  // --- running statements -------------------------------------------------------------------
  // Sends with `send` (a PQsend* call) and collects every result before the deadline.
  template <typename Send>
  std::optional<Failure> run(Connection& c, Deadline deadline, Send&& send, Results* out,
                             bool until_copy_in = false) {
    if (!send(c.conn)) return lost(c, "send");
    if (auto failed = flush_out(c, deadline)) return failed;
    return collect(c, deadline, out, until_copy_in);
  }

  // Pushes libpq's output buffer to the server.
  std::optional<Failure> flush_out(Connection& c, Deadline deadline) {
    for (;;) {
      const int flushed = PQflush(c.conn);
      if (flushed == 0) return {};
      if (flushed < 0) return lost(c, "send");
      if (!wait_socket(c.conn, true, deadline)) return timed_out(c);
      if (!PQconsumeInput(c.conn)) return lost(c, "receive");
    }
  }

  // Reads results until libpq has none left (or, with `until_copy_in`, until the server asks
  // for COPY data); the first error is returned once the connection is idle again.
  std::optional<Failure> collect(Connection& c, Deadline deadline, Results* out,
                                 bool until_copy_in = false) {
    PGconn* conn = c.conn;
    std::optional<Failure> first_error;
    for (;;) {
      while (PQisBusy(conn)) {
        if (!wait_socket(conn, false, deadline)) return timed_out(c);
        if (!PQconsumeInput(conn)) return lost(c, "receive");
      }
      PgResult result(PQgetResult(conn));
      if (!result) break;
      ExecStatusType st = PQresultStatus(result.get());
      if (st == PGRES_COPY_IN && until_copy_in && !first_error) return {};
      if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        if (!first_error) first_error = classify(c, result.get());
      } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        return lost(c, "an unexpected COPY");  // never sent by us: the state is unknown
      } else if (out) {
        out->push_back(std::move(result));
      }
    }
    if (!first_error && PQstatus(conn) == CONNECTION_BAD) return lost(c, "receive");
    if (!first_error && until_copy_in) return lost(c, "COPY (the server did not ask for data)");
    if (first_error && (first_error->drop || PQstatus(conn) == CONNECTION_BAD)) {
      first_error->drop = true;
      c.close();
    }
    return first_error;
  }

  // COPY ... FROM STDIN with `data` as its whole input; `out` receives the final result.
  std::optional<Failure> copy_in(Connection& c, Deadline deadline, const std::string& sql,
                                 const std::string& data, Results* out) {
    if (auto failed = run(c, deadline, [&](PGconn* conn) { return PQsendQuery(conn, sql.c_str()); },
                          nullptr, true)) {
      return failed;
    }
    constexpr size_t kChunk = 256 * 1024;
    for (size_t at = 0; at < data.size();) {
      const int n = static_cast<int>(std::min(kChunk, data.size() - at));
      const int rc = PQputCopyData(c.conn, data.data() + at, n);
      if (rc < 0) return lost(c, "COPY");
      if (rc == 1) {
        at += static_cast<size_t>(n);
      } else if (auto failed = flush_out(c, deadline)) {  // 0: libpq's buffer is full
        return failed;
      }
    }
    for (;;) {
      const int rc = PQputCopyEnd(c.conn, nullptr);
      if (rc < 0) return lost(c, "COPY");
      if (rc == 1) break;
      if (auto failed = flush_out(c, deadline)) return failed;
    }
    if (auto failed = flush_out(c, deadline)) return failed;
    return collect(c, deadline, out);
  }

  std::optional<Failure> exec(Connection& c, Deadline deadline, const std::string& sql,
                              Results* out = nullptr) {
    return run(c, deadline, [&](PGconn* conn) { return PQsendQuery(conn, sql.c_str()); }, out);
  }

  Failure lost(Connection& c, const char* during) {
    std::string message = one_line(PQerrorMessage(c.conn));
    c.close();
    return Failure{true, true, std::string("postgres: connection lost during ") + during + ": " + message};
  }
  Failure timed_out(Connection& c) {
    c.close();  // the statement's fate is unknown: never reuse this connection
    return Failure{true, true, "postgres: timed out waiting for the server"};
  }
  Failure classify(Connection& c, const PGresult* result) {
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    std::string sqlstate = state ? state : "";
    Failure f;
    f.transient = is_transient_sqlstate(sqlstate) || PQstatus(c.conn) == CONNECTION_BAD;
    // 25006 too: a new session may reach the new primary after a failover.
    f.drop = PQstatus(c.conn) == CONNECTION_BAD || sqlstate.starts_with("08") ||
             sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" || sqlstate == "25006";
    f.reason = "postgres " + (sqlstate.empty() ? std::string("error") : sqlstate) + ": " +
               one_line(PQresultErrorMessage(result));
    f.sqlstate = std::move(sqlstate);
    return f;
  }

  // --- schema -------------------------------------------------------------------------------
  std::optional<Failure> ensure_schema(Connection& c, Deadline deadline) {
    if (!options.create_schema || schema_ready.load(std::memory_order_acquire)) return {};
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    detail::TimedGate::Hold hold(schema_gate, std::max(wait, std::chrono::milliseconds(0)));
    if (!hold.acquired()) return Failure{true, false, "postgres: timed out waiting for the schema"};
    if (schema_ready.load(std::memory_order_acquire)) return {};
    auto failed = migrate(c, deadline);
    if (failed && c.conn) (void)exec(c, deadline, "ROLLBACK");
    if (!failed) schema_ready.store(true, std::memory_order_release);
    return failed;
  }

  std::optional<Failure> migrate(Connection& c, Deadline deadline) {
    using schema::Dialect;
    const std::string begin = "BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockId) +
                              "); SELECT to_regclass('schema_migrations') IS NOT NULL";
    Results results;
    if (auto failed = exec(c, deadline, begin, &results)) return failed;
    // CREATE TABLE IF NOT EXISTS needs the CREATE privilege on the schema even when the table
    // is there: a node whose role may only read and write the tables (the schema made by
    // another role, or an earlier node) failed every write with 42501 and dead-lettered it all.
    const bool has_table = !results.empty() && std::string_view(PQgetvalue(results.back().get(), 0, 0)) == "t";
    if (!has_table) {
      if (auto failed = exec(c, deadline, schema::create_migrations_table_sql(Dialect::postgres))) return failed;
    }
    results.clear();
    if (auto failed = exec(c, deadline, schema::current_version_sql(), &results)) return failed;
    int current = results.empty() ? 0 : std::atoi(PQgetvalue(results.back().get(), 0, 0));
    if (current > schema::latest_version()) {
      return Failure{false, false, "postgres: the database's schema version " + std::to_string(current) +
                                       " is newer than this reqbus knows (" +
                                       std::to_string(schema::latest_version()) + ")"};
    }
    const std::string now = std::to_string(clock_us());
    for (const schema::Migration& m : schema::migrations(Dialect::postgres)) {
      if (m.version <= current) continue;
      for (const std::string& statement : m.statements) {
        if (auto failed = exec(c, deadline, statement)) return failed;
      }
      const std::string version = std::to_string(m.version);
      const std::string description(m.description);
      const std::string record = schema::record_migration_sql(Dialect::postgres);
      const char* params[] = {version.c_str(), now.c_str(), description.c_str()};
      auto failed = run(c, deadline, [&](PGconn* conn) {
        return PQsendQueryParams(conn, record.c_str(), 3, nullptr, params, nullptr, nullptr, 0);
      }, nullptr);
      if (failed) return failed;
    }
    return exec(c, deadline, "COMMIT");
  }

  int64_t clock_us() const { return options.clock->unix_us(); }

  // --- one attempt of a write -----------------------------------------------------------------
  // Leases a connection, (re)opens it, ensures the schema, prepares `statement` and runs it.
  // A pooled connection found dead is reopened once within the same call: writes are
  // idempotent, so sending again is safe.
  template <typename Use>
  WriteResult with_connection(Deadline deadline, Use&& use) {
    struct Watch {  // this write answers abort_writes() calls made from now until it returns
      AbortWatch saved = current_write;
      explicit Watch(const std::atomic<uint64_t>& generation) {
        current_write = AbortWatch{&generation, generation.load(std::memory_order_relaxed)};
      }
      ~Watch() { current_write = saved; }
    } watch(abort_generation);
    auto slot = acquire(deadline);
    if (current_write.aborted()) {
      if (slot) release(*slot);
      errors.fetch_add(1, std::memory_order_relaxed);
      return WriteResult::retry_later(kAborted);
    }
    if (!slot) {
      errors.fetch_add(1, std::memory_order_relaxed);
      return WriteResult::retry_later("postgres: all " + std::to_string(options.connections) +
                                      " connections stayed busy until the timeout");
    }
    Connection& c = pool[*slot];
    std::optional<Failure> failed;
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = c.conn != nullptr;
      failed.reset();
      if (!c.conn) failed = open(c, deadline);
      if (!failed) failed = ensure_schema(c, deadline);
      if (!failed) failed = use(c);
      if (!failed || !reused || !failed->drop || !failed->transient || current_write.aborted()) break;
    }
    if (failed && current_write.aborted() && c.conn) c.close();  // stopped mid-statement
    release(*slot);
    if (!failed) {
      batches.fetch_add(1, std::memory_order_relaxed);
      return WriteResult::success();
    }
    errors.fetch_add(1, std::memory_order_relaxed);
    if (current_write.aborted()) return WriteResult::retry_later(kAborted);
    return failed->transient ? WriteResult::retry_later(failed->reason)
                             : WriteResult::failure(failed->reason);
  }

  // Opens a pooled connection and ensures the schema, writing nothing.
  WriteResult check(Deadline deadline) {
    auto slot = acquire(deadline);
    if (!slot) return WriteResult::retry_later("postgres: every connection stayed busy until the timeout");
    Connection& c = pool[*slot];
    std::optional<Failure> failed;
    if (!c.conn) failed = open(c, deadline);
    if (!failed) failed = ensure_schema(c, deadline);
    release(*slot);
    if (!failed) return WriteResult::success();
    return failed->transient ? WriteResult::retry_later(failed->reason) : WriteResult::failure(failed->reason);
  }

  std::optional<Failure> prepare(Connection& c, Deadline deadline, Statement which,
                                 const std::string& sql, const std::vector<Oid>& types) {
    if (c.prepared & which) return {};
    const std::string stmt_name = "reqbus_" + std::to_string(which);
    auto failed = run(c, deadline, [&](PGconn* conn) {
      return PQsendPrepare(conn, stmt_name.c_str(), sql.c_str(), static_cast<int>(types.size()),
                           types.data());
    }, nullptr);
    if (!failed) c.prepared |= which;
    return failed;
  }

  std::optional<Failure> execute(Connection& c, Deadline deadline, Statement which,
                                 const std::string& sql, const ParamSet& params, Results* out) {
    if (auto failed = prepare(c, deadline, which, sql, params.types)) return failed;
    const std::string stmt_name = "reqbus_" + std::to_string(which);
    const size_t n = params.buffers.size();
    std::vector<const char*> values(n);
    std::vector<int> lengths(n), formats(n, 1);  // every parameter is binary
    for (size_t i = 0; i < n; ++i) {
      values[i] = params.buffers[i].data();
      lengths[i] = static_cast<int>(params.buffers[i].size());
    }
    return run(c, deadline, [&](PGconn* conn) {
      return PQsendQueryPrepared(conn, stmt_name.c_str(), static_cast<int>(n), values.data(),
                                 lengths.data(), formats.data(), 0);
    }, out);
  }

  // --- the two ways a batch is loaded ---------------------------------------------------------
  // True (and one write fewer left to pause) while writes skip COPY after a fallback.
  bool copy_paused() {
    int64_t left = copy_pause.load(std::memory_order_relaxed);
    while (left > 0 && !copy_pause.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
    }
    return left > 0;
  }

  // Binary COPY straight into the table: all or nothing, like every statement here.
  std::optional<Failure> copy(Connection& c, Deadline deadline, const CopyData& data) {
    Results results;
    auto failed = copy_in(c, deadline, data.requests ? sql_copy_requests : sql_copy_events,
                          data.bytes, &results);
    if (failed) return failed;
    copies.fetch_add(1, std::memory_order_relaxed);
    const uint64_t copied =
        results.empty() ? 0 : std::strtoull(PQcmdTuples(results.back().get()), nullptr, 10);
    rows_inserted.fetch_add(copied, std::memory_order_relaxed);
    return {};
  }

  // INSERT ... SELECT * FROM unnest(...) ON CONFLICT DO NOTHING, both kinds in one statement.
  // Each statement returns the ids it stored; with is_new, says which of `batch` they were.
  std::optional<Failure> insert(Connection& c, Deadline deadline, const EncodedBatch& encoded,
                                const std::vector<Message>& batch, std::vector<bool>* is_new) {
    Results results;
    uint64_t inserted = 0;
    // The ids returned, per kind (0 requests, 1 events), with how many times each came back.
    std::unordered_map<std::string, int> stored[2];
    auto take = [&](int kind, const char* id) {
      if (is_new) ++stored[kind][id];
    };
    if (encoded.events.rows == 0 || encoded.requests.rows == 0) {
      const bool requests = encoded.events.rows == 0;
      const ParamSet& params = requests ? encoded.requests : encoded.events;
      auto failed = execute(c, deadline, requests ? kInsertRequests : kInsertEvents,
                            requests ? sql_requests : sql_events, params, &results);
      if (failed) return failed;
      if (!results.empty()) {
        PGresult* r = results.back().get();
        inserted = uint64_t(PQntuples(r));
        for (int row = 0; row < PQntuples(r); ++row) take(requests ? 0 : 1, PQgetvalue(r, row, 0));
      }
    } else {
      ParamSet both = concat(encoded.requests, encoded.events);
      auto failed = execute(c, deadline, kInsertBoth, sql_both, both, &results);
      if (failed) return failed;
      if (!results.empty()) {
        PGresult* r = results.back().get();
        inserted = uint64_t(PQntuples(r));
        for (int row = 0; row < PQntuples(r); ++row) take(PQgetvalue(r, row, 0)[0] == '1', PQgetvalue(r, row, 1));
      }
    }
    // In row order: of two rows with one id (as stored: ids that differ only in bytes text
    // cannot hold are one), the first is the one stored, the others were skipped.
    if (is_new) {
      is_new->assign(batch.size(), false);
      std::string scratch;
      for (const bool request : {true, false}) {
        auto& ids = stored[request ? 0 : 1];
        for (size_t i : request ? encoded.request_order : encoded.event_order) {
          const std::string& id = request ? batch[i].request.request_id : batch[i].analytics.message_id;
          auto it = ids.find(std::string(text_value(id, scratch)));
          if (it != ids.end() && it->second > 0) {
            (*is_new)[i] = true;
            --it->second;
          }
        }
      }
    }
    const uint64_t total = encoded.requests.rows + encoded.events.rows;
    rows_inserted.fetch_add(inserted, std::memory_order_relaxed);
    duplicates.fetch_add(total - std::min(inserted, total), std::memory_order_relaxed);
    return {};
  }

  // write() and write_telling_new() (is_new may be nullptr).
  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout, std::vector<bool>* is_new);
};

PostgresSink::PostgresSink(PostgresSinkOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.conninfo.empty()) throw Error(ErrorCode::invalid_argument, "PostgresSinkOptions.conninfo: required");
  if (options.connections == 0 || options.connections > 64) {
    throw Error(ErrorCode::invalid_argument, "PostgresSinkOptions.connections: must be 1..64, got " +
                                                 std::to_string(options.connections));
  }
  if (options.connect_timeout.count() <= 0) {
    throw Error(ErrorCode::invalid_argument, "PostgresSinkOptions.connect_timeout: must be > 0");
  }
  if (options.statement_timeout.count() < 0) {
    throw Error(ErrorCode::invalid_argument, "PostgresSinkOptions.statement_timeout: must be >= 0");
  }
  if (!options.clock) options.clock = system_clock();
  impl_->name = describe_conninfo(options.conninfo);  // throws invalid_argument when unparsable
  impl_->options = std::move(options);
  impl_->pool.resize(impl_->options.connections);
  for (size_t i = impl_->pool.size(); i-- > 0;) impl_->free_slots.push_back(i);
  impl_->sql_requests = insert_unnest_sql(schema::requests_table(), 1, "request_id");  // the ids stored now
  impl_->sql_events = insert_unnest_sql(schema::events_table(), 1, "message_id");
  impl_->sql_both = insert_both_sql();
  impl_->sql_counters = counter_flush_sql();
  impl_->sql_copy_requests = copy_sql(schema::requests_table());
  impl_->sql_copy_events = copy_sql(schema::events_table());
}

PostgresSink::~PostgresSink() {
  for (Connection& c : impl_->pool) c.close();
}

std::string PostgresSink::name() const { return impl_->name; }

PostgresSinkStats PostgresSink::stats() const noexcept {
  PostgresSinkStats s;
  s.batches = impl_->batches.load(std::memory_order_relaxed);
  s.rows_inserted = impl_->rows_inserted.load(std::memory_order_relaxed);
  s.duplicates = impl_->duplicates.load(std::memory_order_relaxed);
  s.counter_flushes_applied = impl_->counter_flushes_applied.load(std::memory_order_relaxed);
  s.counter_flushes_duplicate = impl_->counter_flushes_duplicate.load(std::memory_order_relaxed);
  s.errors = impl_->errors.load(std::memory_order_relaxed);
  s.reconnects = impl_->reconnects.load(std::memory_order_relaxed);
  s.copies = impl_->copies.load(std::memory_order_relaxed);
  s.copy_fallbacks = impl_->copy_fallbacks.load(std::memory_order_relaxed);
  s.text_replaced = impl_->text_replaced.load(std::memory_order_relaxed);
  return s;
}

WriteResult PostgresSink::check(std::chrono::milliseconds timeout) {
  return impl_->check(SteadyClock::now() + timeout);
}

void PostgresSink::abort_writes() noexcept { impl_->abort_generation.fetch_add(1, std::memory_order_relaxed); }

WriteResult PostgresSink::write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) {
  return impl_->write(batch, timeout, nullptr);
}

WriteResult PostgresSink::write_telling_new(const std::vector<Message>& batch, std::chrono::milliseconds timeout,
                                            std::vector<bool>& is_new) {
  return impl_->write(batch, timeout, &is_new);
}

WriteResult PostgresSink::Impl::write(const std::vector<Message>& batch, std::chrono::milliseconds timeout,
                                      std::vector<bool>* is_new) {
  const Deadline deadline = SteadyClock::now() + timeout;
  Impl& impl = *this;
  // Encoding happens before a connection is leased, so the pool is held only for the I/O.
  std::optional<CopyData> copy;
  if (impl.options.copy && !impl.copy_paused()) copy = encode_copy(batch);
  std::optional<EncodedBatch> encoded;
  if (!copy) {
    encoded = encode_batch(batch);
    if (encoded->requests.rows == 0 && encoded->events.rows == 0) return WriteResult::success();
  }
  return impl.with_connection(deadline, [&](Connection& c) -> std::optional<Impl::Failure> {
    if (copy) {
      auto failed = impl.copy(c, deadline, *copy);
      if (!failed) {  // all or nothing: every event it loaded was new (a batch of one kind)
        impl.text_replaced.fetch_add(copy->replaced, std::memory_order_relaxed);
        if (is_new) {
          is_new->assign(batch.size(), false);
          for (size_t i = 0; i < batch.size(); ++i) (*is_new)[i] = (batch[i].kind == MessageKind::request_sent) == copy->requests;
        }
        return {};
      }
      if (failed->sqlstate != kUniqueViolation) return failed;
      // A row of the batch is stored already (a replay, a retried write that had committed):
      // the COPY rolled back as a whole; load the batch again skipping what is there.
      impl.copy_fallbacks.fetch_add(1, std::memory_order_relaxed);
      impl.copy_pause.store(kCopyPauseWrites, std::memory_order_relaxed);
      encoded = encode_batch(batch);
    }
    auto failed = impl.insert(c, deadline, *encoded, batch, is_new);
    if (!failed) {
      impl.text_replaced.fetch_add(encoded->requests.replaced + encoded->events.replaced,
                                   std::memory_order_relaxed);
    }
    return failed;
  });
}

WriteResult PostgresSink::write_counters(const std::vector<CounterFlush>& flushes,
                                         std::chrono::milliseconds timeout) {
  const Deadline deadline = SteadyClock::now() + timeout;
  if (flushes.empty()) return WriteResult::success();
  Impl& impl = *impl_;
  ParamSet params = encode_counter_flushes(flushes, impl.clock_us());
  return impl.with_connection(deadline, [&](Connection& c) -> std::optional<Impl::Failure> {
    Impl::Results results;
    if (auto failed = impl.execute(c, deadline, kCounters, impl.sql_counters, params, &results)) {
      return failed;
    }
    uint64_t applied = 0;
    if (!results.empty() && PQntuples(results.back().get()) == 1) {
      applied = std::strtoull(PQgetvalue(results.back().get(), 0, 0), nullptr, 10);
    }
    impl.counter_flushes_applied.fetch_add(applied, std::memory_order_relaxed);
    impl.text_replaced.fetch_add(params.replaced, std::memory_order_relaxed);
    impl.counter_flushes_duplicate.fetch_add(flushes.size() - std::min<uint64_t>(applied, flushes.size()),
                                             std::memory_order_relaxed);
    return {};
  });
}

WriteResult PostgresSink::recount(const CounterRecount& r, std::vector<CounterChange>& changes,
                                  std::chrono::milliseconds timeout) {
  const Deadline deadline = SteadyClock::now() + timeout;
  Impl& impl = *impl_;
  using schema::Dialect;
  changes.clear();
  WriteResult result = impl.with_connection(deadline, [&](Connection& c) -> std::optional<Impl::Failure> {
    // A failure leaves no transaction open on a pooled connection: it is closed (rolled back).
    auto fail = [&](Impl::Failure f) {
      c.close();
      return std::optional<Impl::Failure>(std::move(f));
    };
    auto query = [&](const std::string& sql, const std::vector<std::string>& params, Impl::Results* out) {
      std::vector<const char*> values;
      for (const auto& p : params) values.push_back(p.c_str());
      return impl.run(c, deadline, [&](PGconn* conn) {
        return PQsendQueryParams(conn, sql.c_str(), int(values.size()), nullptr, values.data(), nullptr, nullptr, 0);
      }, out);
    };
    if (auto f = impl.exec(c, deadline, "BEGIN ISOLATION LEVEL REPEATABLE READ")) return fail(*f);
    Impl::Results res;
    // The day's counters first (locked, unless a dry run), so the snapshot the rows are counted
    // in is the one the locks were taken in: a flush into them that committed after it makes
    // this fail (40001, retried by the caller) rather than be overwritten.
    std::map<std::string, detail::HeldCounter> held;
    const std::string end = detail::prefix_end(r.key_prefix);
    std::vector<std::string> range{r.key_prefix};
    if (!end.empty()) range.push_back(end);
    range.push_back(r.key_suffix);
    if (auto f = query(schema::counters_in_range_sql(Dialect::postgres, r.key_suffix.size(), !end.empty(), !r.dry_run),
                       range, &res))
      return fail(*f);
    for (const PgResult& q : res)
      for (int i = 0; i < PQntuples(q.get()); ++i)
        held[PQgetvalue(q.get(), i, 0)] = {std::strtoll(PQgetvalue(q.get(), i, 1), nullptr, 10),
                                           std::strtoll(PQgetvalue(q.get(), i, 2), nullptr, 10)};
    res.clear();
    const std::vector<std::string> span{std::to_string(r.from_us), std::to_string(r.to_us)};
    StoredCounts rows;
    if (auto f = query(schema::count_requests_sql(Dialect::postgres), span, &res)) return fail(*f);
    for (const PgResult& q : res)
      for (int i = 0; i < PQntuples(q.get()); ++i)
        rows.requests.push_back({int32_t(std::strtol(PQgetvalue(q.get(), i, 0), nullptr, 10)), PQgetvalue(q.get(), i, 1),
                                 std::strtoll(PQgetvalue(q.get(), i, 2), nullptr, 10)});
    res.clear();
    if (auto f = query(schema::count_events_sql(Dialect::postgres), span, &res)) return fail(*f);
    for (const PgResult& q : res)
      for (int i = 0; i < PQntuples(q.get()); ++i)
        rows.events.emplace_back(PQgetvalue(q.get(), i, 0), std::strtoll(PQgetvalue(q.get(), i, 1), nullptr, 10));
    try {
      changes = detail::recount_changes(r, rows, held);
    } catch (const std::exception& e) {  // refused: permanent
      return fail(Impl::Failure{false, true, impl.name + ": " + e.what()});
    }
    if (!r.dry_run)
      for (const CounterChange& change : changes)
        if (change.after != change.before)
          if (auto f = query(schema::counter_set_sql(Dialect::postgres), {change.key, std::to_string(change.after)}, nullptr))
            return fail(*f);
    if (auto f = impl.exec(c, deadline, r.dry_run ? "ROLLBACK" : "COMMIT")) return fail(*f);
    return {};
  });
  if (!result.ok()) changes.clear();  // rolled back
  return result;
}

}  // namespace reqbus
