// SqliteSink: one connection, one transaction and cached prepared statements per batch.
// Errors inside a write travel as DbError (a SQLite result code and message) to one place,
// to_result(), which maps them to retry_later or failure and rolls the transaction back.
#include "reqbus/sqlite_sink.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "analytics/sinks/recount.hpp"
#include "analytics/sinks/schema.hpp"
#include "analytics/sinks/timed_gate.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus {
namespace {

namespace sc = schema;
using ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

struct DbError {
  int code;             // SQLite extended result code, or SQLITE_ERROR for our own checks
  std::string message;  // what failed and why
  bool schema = false;  // a schema the sink cannot write into: permanent
  bool logged = true;   // a permanent failure is logged (not a recount's refusal: its caller says it)
};

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

const char* synchronous_pragma(SqliteSinkOptions::Synchronous s) {
  switch (s) {
    case SqliteSinkOptions::Synchronous::off: return "PRAGMA synchronous=OFF";
    case SqliteSinkOptions::Synchronous::normal: return "PRAGMA synchronous=NORMAL";
    case SqliteSinkOptions::Synchronous::full: return "PRAGMA synchronous=FULL";
  }
  return "PRAGMA synchronous=NORMAL";
}

bool is_transient(int code) {
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_INTERRUPT:  // our own deadline (progress handler)
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_SCHEMA:
      return true;
    default:
      return false;  // READONLY, CORRUPT, NOTADB, CANTOPEN, ERROR, PERM, AUTH, CONSTRAINT, ...
  }
}

// Errors of the file as a whole, not of a batch: once the file has worked, the store is down
// until someone repairs it (a remount read-only, a permission or file replaced by mistake). A
// write that fails so is retried, so a Batcher spools and replays its events instead of
// setting every batch aside in the dead-letter file. At open() they stay permanent: a file
// that never worked is a configuration error the node refuses at start.
bool is_store_wide(int code) {
  switch (code & 0xff) {
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return true;
    default:
      return false;
  }
}

SqliteSinkOptions validated(SqliteSinkOptions o) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorCode::invalid_argument, "SqliteSinkOptions." + what);
  };
  if (o.path.empty()) bad("path: empty");
  if (o.busy_timeout.count() < 0) bad("busy_timeout: negative");
  if (o.retry_after.count() < 0) bad("retry_after: negative");
  if (o.cache_size_kib < 0) bad("cache_size_kib: negative");
  if (o.page_size < 512 || o.page_size > 65536 || (o.page_size & (o.page_size - 1)) != 0)
    bad("page_size: must be a power of two from 512 to 65536");
  if (o.max_database_bytes < 0) bad("max_database_bytes: negative");
  if (!o.clock) o.clock = system_clock();
  return o;
}

}  // namespace

struct SqliteSink::Impl {
  explicit Impl(SqliteSinkOptions o) : opt(validated(std::move(o))), name("sqlite:" + opt.path) {}
  ~Impl() { close_connection(); }

  const SqliteSinkOptions opt;
  const std::string name;

  detail::TimedGate gate;  // held while using everything below down to `busy_ms`
  sqlite3* db = nullptr;
  // insert_requests inserts kRowsPerInsert rows per statement: a batch of requests costs one
  // step per 32 rows instead of one per row (measured: ~20 % less CPU per row).
  static constexpr int kRowsPerInsert = 32;
  Stmt begin, commit, insert_request, insert_requests, insert_event, insert_flush, add_counter, new_request_ids;
  bool ready = false;            // opened, migrated and statements prepared
  bool worked = false;           // the file was opened and migrated once (store-wide errors
                                 // after that are the store being down, not a bad path)
  Clock::time_point deadline{};  // of the write in progress; read by the progress handler
  int busy_ms = 0;               // busy timeout of the write in progress
  SteadyClock::time_point busy_since{};  // when the write in progress met a lock held elsewhere
  uint64_t write_generation = 0;  // abort_generation when the write in progress was called
  // abort_writes() moves it on; the write in progress stops at its next progress-handler call
  // (every 1000 VM steps) or busy-handler call.
  std::atomic<uint64_t> abort_generation{0};

  std::atomic<uint64_t> batches{0}, rows_inserted{0}, duplicates{0}, flushes_applied{0},
      flushes_duplicate{0}, retries{0}, errors{0};
  RateLimiter log_limiter;

  // --- connection -------------------------------------------------------------------------

  void close_connection() noexcept {
    for (Stmt* s : {&begin, &commit, &insert_request, &insert_requests, &insert_event, &insert_flush,
                    &add_counter, &new_request_ids})
      s->reset();
    if (db) sqlite3_close_v2(db);
    db = nullptr;
    ready = false;
  }

  [[noreturn]] void fail(int rc, const std::string& what) {
    std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    throw DbError{db ? sqlite3_extended_errcode(db) : rc, std::move(msg)};
  }

  void exec(const std::string& sql, const char* what) {
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(rc, what);
  }

  Stmt prepare(const std::string& sql, const char* what) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = std::string(what) + ": " + sqlite3_errmsg(db);
      int code = sqlite3_extended_errcode(db);
      sqlite3_finalize(s);
      // "no such table/column" on a database that claims our version: not our schema.
      if ((code & 0xff) == SQLITE_ERROR) throw DbError{code, "schema mismatch: " + msg, true};
      throw DbError{code, msg};
    }
    return Stmt(s);
  }

  // Runs a statement to completion; returns the rows it changed. Resets it either way.
  int run(sqlite3_stmt* s, const char* what) {
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
      sqlite3_reset(s);
      fail(rc, what);
    }
    sqlite3_reset(s);
    return sqlite3_changes(db);
  }

  int64_t query_int(const std::string& sql, const char* what) {
    Stmt s = prepare(sql, what);
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) return sqlite3_column_int64(s.get(), 0);
    if (rc == SQLITE_DONE) return 0;
    fail(rc, what);
  }

  bool aborted() const { return abort_generation.load(std::memory_order_relaxed) != write_generation; }

  static int on_progress(void* self) {
    auto* impl = static_cast<Impl*>(self);
    return impl->opt.clock->now() > impl->deadline || impl->aborted() ? 1 : 0;  // nonzero interrupts
  }

  // sqlite3_busy_timeout's wait, which abort_writes() can cut short: sleeps in steps of up to
  // 10 ms while another connection holds the lock, for at most busy_ms. Returns 0 to give up
  // (the statement fails with SQLITE_BUSY).
  static int on_busy(void* self, int calls) {
    auto* impl = static_cast<Impl*>(self);
    const auto now = SteadyClock::now();
    if (calls == 0) impl->busy_since = now;
    if (impl->aborted() || now - impl->busy_since >= std::chrono::milliseconds(impl->busy_ms)) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(calls < 10 ? 1 : 10));
    return 1;
  }

  // Opens the file, sets the pragmas, applies migrations and prepares the statements.
  void ensure_open() {
    if (ready) return;
    close_connection();  // a half-opened connection (e.g. migration hit a lock) starts over
    int rc = sqlite3_open_v2(opt.path.c_str(), &db,
                             SQLITE_OPEN_READWRITE | (opt.create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = "cannot open " + opt.path + ": " +
                        (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
      close_connection();
      throw DbError{rc, std::move(msg)};
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_handler(db, &Impl::on_busy, this);
    sqlite3_progress_handler(db, 1000, &Impl::on_progress, this);
    // sqlite3_open_v2 silently falls back to read-only when the file is not writable.
    if (sqlite3_db_readonly(db, "main") == 1)
      throw DbError{SQLITE_READONLY, "database file is read-only (cannot open it for writing)"};
    if (!opt.create) {  // before any pragma that could change the file
      const int64_t version = schema_version();
      if (version != sc::latest_version())
        throw DbError{SQLITE_ERROR,
                      version == 0 ? "not a reqbus store (no schema_migrations table)"
                                   : "schema version " + std::to_string(version) + ", where this reqbus writes " +
                                         std::to_string(sc::latest_version()) + " (a node started on it migrates it)",
                      true};
    }
    // Only takes effect while the file is still empty, i.e. before WAL mode and the schema.
    exec("PRAGMA page_size=" + std::to_string(opt.page_size), "set page_size");
    exec("PRAGMA journal_mode=WAL", "set journal_mode=WAL");
    exec(synchronous_pragma(opt.synchronous), "set synchronous");
    exec("PRAGMA cache_size=-" + std::to_string(opt.cache_size_kib), "set cache_size");
    // A multi-row INSERT inside a transaction keeps a statement journal (the pages it touched,
    // to undo it alone). SQLite spills one past 64 KiB to a temp file in /var/tmp: strace of
    // the bus -> Batcher -> SQLite benchmark showed 5 of every 6 page writes going there, not
    // to the database. In memory it holds a few pages per statement.
    exec("PRAGMA temp_store=MEMORY", "set temp_store");
    if (opt.max_database_bytes > 0) {
      int64_t page = query_int("PRAGMA page_size", "read page_size");
      int64_t pages = std::max<int64_t>(1, opt.max_database_bytes / std::max<int64_t>(page, 512));
      exec("PRAGMA max_page_count=" + std::to_string(pages), "set max_page_count");
    }
    migrate();
    begin = prepare("BEGIN IMMEDIATE", "prepare BEGIN");
    commit = prepare("COMMIT", "prepare COMMIT");
    insert_request = prepare(sc::insert_ignore_sql(sc::requests_table(), sc::Dialect::sqlite),
                             "prepare insert into requests");
    insert_requests = prepare(sc::insert_ignore_sql(sc::requests_table(), sc::Dialect::sqlite, kRowsPerInsert),
                              "prepare multi-row insert into requests");
    insert_event = prepare(sc::insert_ignore_sql(sc::events_table(), sc::Dialect::sqlite),
                           "prepare insert into events");
    insert_flush = prepare(sc::insert_ignore_sql(sc::counter_flushes_table(), sc::Dialect::sqlite),
                           "prepare insert into counter_flushes");
    add_counter = prepare(sc::counter_add_sql(sc::Dialect::sqlite), "prepare counter upsert");
    new_request_ids = prepare("SELECT request_id FROM requests WHERE rowid > ?1 AND rowid <= ?2",
                              "prepare select of new request ids");
    ready = true;
  }

  int64_t schema_version() {
    if (query_int("SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                  "name='schema_migrations'",
                  "read sqlite_master") == 0)
      return 0;
    return query_int(sc::current_version_sql(), "read schema version");
  }

  void check_not_newer(int64_t version) {
    if (version > sc::latest_version())
      throw DbError{SQLITE_ERROR,
                    "schema mismatch: the database has schema version " +
                        std::to_string(version) + ", newer than this reqbus knows (" +
                        std::to_string(sc::latest_version()) + ")",
                    true};
  }

  void migrate() {
    int64_t version = schema_version();  // a read: no write lock when nothing is pending
    check_not_newer(version);
    if (version == sc::latest_version()) return;
    exec("BEGIN IMMEDIATE", "begin migration");
    try {
      exec(sc::create_migrations_table_sql(sc::Dialect::sqlite), "create schema_migrations");
      version = query_int(sc::current_version_sql(), "read schema version");  // under the lock
      check_not_newer(version);
      Stmt record = prepare(sc::record_migration_sql(sc::Dialect::sqlite), "prepare record");
      for (const sc::Migration& m : sc::migrations(sc::Dialect::sqlite)) {
        if (m.version <= version) continue;
        for (const std::string& sql : m.statements) {
          try {
            exec(sql, "apply migration");
          } catch (DbError& e) {  // "no such table": a database that claims a version it is not
            if ((e.code & 0xff) == SQLITE_ERROR) e = DbError{e.code, "schema mismatch: " + e.message, true};
            throw;
          }
        }
        sqlite3_bind_int(record.get(), 1, m.version);
        sqlite3_bind_int64(record.get(), 2, opt.clock->unix_us());
        sqlite3_bind_text(record.get(), 3, m.description.data(),
                          static_cast<int>(m.description.size()), SQLITE_STATIC);
        run(record.get(), "record migration");
      }
      exec("COMMIT", "commit migration");
    } catch (...) {
      if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  // --- binding ----------------------------------------------------------------------------

  static void text(sqlite3_stmt* s, int col, const std::string& v) {
    sqlite3_bind_text(s, col + 1, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  static void text_or_null(sqlite3_stmt* s, int col, const std::string& v) {
    if (v.empty()) sqlite3_bind_null(s, col + 1);
    else text(s, col, v);
  }
  static void int64(sqlite3_stmt* s, int col, int64_t v) { sqlite3_bind_int64(s, col + 1, v); }

  // Binds one request's columns as row `row` of statement `s` (0-based).
  static void bind(sqlite3_stmt* s, int row, const RequestLog& r) {
    const int b = row * static_cast<int>(sc::kRequestsColumnCount);
    text(s, b + sc::kRequestId, r.request_id);
    text(s, b + sc::kMethod, r.method);
    text(s, b + sc::kPath, r.path);
    int64(s, b + sc::kStatusCode, r.status_code);
    sqlite3_bind_double(s, b + sc::kDurationMs + 1, r.duration_ms);
    text(s, b + sc::kUserAgent, r.user_agent);
    text(s, b + sc::kRemoteIp, r.remote_ip);
    text(s, b + sc::kReferer, r.referer);
    text(s, b + sc::kDeviceType, r.device_type);
    text(s, b + sc::kSessionId, r.session_id);
    int64(s, b + sc::kSessionPageViews, r.session_page_views);
    int64(s, b + sc::kInsertedAt, r.inserted_at);
    text(s, b + sc::kRequestNodeId, r.node_id);
    int64(s, b + sc::kRequestSeq, static_cast<int64_t>(r.seq));
  }

  // Inserts the requests of messages[0..n), all request_sent; returns the rows that were new.
  // With is_new, also says which: (*is_new)[i] for messages[i].
  int64_t insert_requests_run(const Message* messages, size_t n, bool* is_new) {
    int64_t inserted = 0;
    size_t i = 0;
    for (; n - i >= size_t{kRowsPerInsert}; i += kRowsPerInsert) {
      sqlite3_stmt* s = insert_requests.get();
      for (int row = 0; row < kRowsPerInsert; ++row) bind(s, row, messages[i + row].request);
      const int changed = run(s, "insert into requests");
      inserted += changed;
      if (is_new) mark_new(messages + i, kRowsPerInsert, changed, is_new + i);
    }
    for (; i < n; ++i) {
      bind(insert_request.get(), 0, messages[i].request);
      const int changed = run(insert_request.get(), "insert into requests");
      inserted += changed;
      if (is_new) is_new[i] = changed > 0;
    }
    return inserted;
  }

  // Which of the n requests one INSERT OR IGNORE was given it stored, having stored `changed`.
  // All or none is the rule; otherwise the new rows are those with the rowids (last - changed,
  // last]: each took the table's largest rowid + 1, and the statement held the write lock.
  void mark_new(const Message* messages, size_t n, int changed, bool* is_new) {
    if (changed == 0 || size_t(changed) == n) {
      std::fill(is_new, is_new + n, changed > 0);
      return;
    }
    const int64_t last = sqlite3_last_insert_rowid(db);
    sqlite3_stmt* s = new_request_ids.get();
    sqlite3_bind_int64(s, 1, last - changed);
    sqlite3_bind_int64(s, 2, last);
    std::vector<std::string> ids;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), size_t(sqlite3_column_bytes(s, 0)));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail(rc, "select new request ids");
    // In order: of two events with one id in the statement, the first is the one stored.
    for (size_t i = 0; i < n; ++i) {
      auto it = std::find(ids.begin(), ids.end(), messages[i].request.request_id);
      is_new[i] = it != ids.end();
      if (is_new[i]) ids.erase(it);
    }
  }

  int insert(const AnalyticsEvent& e) {
    sqlite3_stmt* s = insert_event.get();
    text(s, sc::kMessageId, e.message_id);
    sqlite3_bind_text(s, sc::kType + 1, to_string(e.type), -1, SQLITE_STATIC);
    text(s, sc::kUserId, e.user_id);
    int64(s, sc::kTimestamp, e.timestamp);
    text_or_null(s, sc::kEvent, e.event);
    text_or_null(s, sc::kEmail, e.email);
    text_or_null(s, sc::kTimezone, e.timezone);
    text_or_null(s, sc::kAccountId, e.account_id);
    text_or_null(s, sc::kName, e.name);
    text_or_null(s, sc::kTraits, e.traits_json);
    text_or_null(s, sc::kProperties, e.properties_json);
    text(s, sc::kEventNodeId, e.node_id);
    int64(s, sc::kEventSeq, static_cast<int64_t>(e.seq));
    return run(s, "insert into events");
  }

  // --- transactions -----------------------------------------------------------------------

  // Locks the connection, opens it if needed, runs body(); turns every error into a result.
  template <class Body>
  // `at_open`: open()'s call, whose caller reports a permanent failure (not logged here).
  WriteResult transact(ms timeout, bool in_transaction, Body&& body, bool at_open = false) {
    const uint64_t generation = abort_generation.load(std::memory_order_relaxed);
    detail::TimedGate::Hold hold(gate, timeout);
    if (!hold.acquired()) {
      ++retries;
      return WriteResult::retry_later(name + ": another write held the connection for " +
                                          std::to_string(timeout.count()) + " ms",
                                      opt.retry_after);
    }
    deadline = opt.clock->now() + timeout;
    busy_ms = static_cast<int>(std::min(opt.busy_timeout, timeout).count());
    write_generation = generation;
    try {
      if (aborted()) throw DbError{SQLITE_INTERRUPT, "interrupted"};
      ensure_open();
      worked = true;
      if (in_transaction) run(begin.get(), "begin transaction");
      body();
      if (in_transaction) run(commit.get(), "commit");
      return WriteResult::success();
    } catch (const DbError& e) {
      return to_result(e, timeout, at_open);
    }
  }

  WriteResult to_result(const DbError& e, ms timeout, bool at_open) {
    if (db && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    for (Stmt* s : {&insert_request, &insert_requests, &insert_event, &insert_flush, &add_counter, &begin, &commit})
      if (*s) sqlite3_reset(s->get());
    const int primary = e.code & 0xff;
    std::string reason = name + ": " + e.message;
    const bool contended = primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
    if ((primary == SQLITE_INTERRUPT || contended) && aborted())
      reason = name + ": write abandoned (abort_writes: the writer is shutting down)";
    else if (contended)
      reason += " (another connection holds the write lock; waited up to " +
                std::to_string(std::min(opt.busy_timeout, timeout).count()) + " ms)";
    else if (primary == SQLITE_INTERRUPT)
      reason += " (the write's timeout of " + std::to_string(timeout.count()) + " ms passed)";
    const bool store_down = !e.schema && worked && !at_open && is_store_wide(e.code);
    if (store_down) reason += " (the store is unusable until this is repaired; retried meanwhile)";
    const bool transient = !e.schema && (is_transient(e.code) || store_down);
    // Keep a ready connection across lock contention; reopen after anything else.
    if (!ready || (primary != SQLITE_BUSY && primary != SQLITE_LOCKED)) close_connection();
    if (transient) {
      ++retries;
      return WriteResult::retry_later(std::move(reason), opt.retry_after);
    }
    ++errors;
    if (!at_open && e.logged) log_limiter.log(LogLevel::error, reason);
    return WriteResult::failure(std::move(reason));
  }

  // write() and write_telling_new(): is_new (batch.size() of them) or nullptr.
  WriteResult write(const std::vector<Message>& batch, ms timeout, bool* is_new);
};

SqliteSink::SqliteSink(SqliteSinkOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
SqliteSink::~SqliteSink() = default;

WriteResult SqliteSink::write(const std::vector<Message>& batch, ms timeout) {
  return impl_->write(batch, timeout, nullptr);
}

WriteResult SqliteSink::write_telling_new(const std::vector<Message>& batch, ms timeout, std::vector<bool>& is_new) {
  std::unique_ptr<bool[]> marks(new bool[batch.size()]());  // vector<bool> has no bool*
  WriteResult r = impl_->write(batch, timeout, marks.get());
  is_new.assign(marks.get(), marks.get() + batch.size());
  return r;
}

WriteResult SqliteSink::Impl::write(const std::vector<Message>& batch, ms timeout, bool* is_new) {
  if (batch.empty()) return WriteResult::success();
  Impl& d = *this;
  uint64_t inserted = 0;
  WriteResult result = d.transact(timeout, true, [&] {
    inserted = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const Message& m = batch[i];
      switch (m.kind) {
        case MessageKind::request_sent: {  // a run of requests, several rows per statement
          size_t end = i + 1;
          while (end < batch.size() && batch[end].kind == MessageKind::request_sent) ++end;
          inserted += d.insert_requests_run(&batch[i], end - i, is_new ? is_new + i : nullptr);
          i = end - 1;
          break;
        }
        case MessageKind::identify:
        case MessageKind::group:
        case MessageKind::track: {
          const int changed = d.insert(m.analytics);
          inserted += changed;
          if (is_new) is_new[i] = changed > 0;
          break;
        }
        default:
          throw DbError{SQLITE_ERROR,
                        "unknown message kind " + std::to_string(static_cast<int>(m.kind)), true};
      }
    }
  });
  if (result.ok()) {
    ++d.batches;
    d.rows_inserted += inserted;
    d.duplicates += batch.size() - inserted;
  }
  return result;
}

WriteResult SqliteSink::write_counters(const std::vector<CounterFlush>& flushes, ms timeout) {
  if (flushes.empty()) return WriteResult::success();
  Impl& d = *impl_;
  uint64_t applied = 0;
  WriteResult result = d.transact(timeout, true, [&] {
    applied = 0;
    const int64_t now_us = d.opt.clock->unix_us();
    sqlite3_stmt* f = d.insert_flush.get();
    sqlite3_stmt* c = d.add_counter.get();
    for (const CounterFlush& flush : flushes) {
      Impl::text(f, sc::kFlushKey, flush.key);
      Impl::int64(f, sc::kWindowStart, flush.window_start);
      Impl::text(f, sc::kFlushNodeId, flush.node_id);
      Impl::int64(f, sc::kFlushCount, flush.count);
      if (d.run(f, "insert into counter_flushes") == 0) continue;  // applied before
      sqlite3_bind_text(c, 1, flush.key.data(), static_cast<int>(flush.key.size()), SQLITE_STATIC);
      sqlite3_bind_int64(c, 2, flush.count);
      sqlite3_bind_int64(c, 3, now_us);
      d.run(c, "add to counters");
      ++applied;
    }
  });
  if (result.ok()) {
    ++d.batches;
    d.flushes_applied += applied;
    d.flushes_duplicate += flushes.size() - applied;
  }
  return result;
}

WriteResult SqliteSink::recount(const CounterRecount& r, std::vector<CounterChange>& changes, ms timeout) {
  Impl& d = *impl_;
  changes.clear();
  auto text_at = [](sqlite3_stmt* s, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
    return p ? std::string(p, size_t(sqlite3_column_bytes(s, col))) : std::string();
  };
  // Runs `s` and hands each row to `row`.
  auto each_row = [&](const Stmt& s, const char* what, auto&& row) {
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) row(s.get());
    if (rc != SQLITE_DONE) d.fail(rc, what);
  };
  // A dry run reads in a deferred transaction (one snapshot, no write lock); a recount holds
  // the write lock (BEGIN IMMEDIATE) from its first read to its commit.
  WriteResult result = d.transact(timeout, !r.dry_run, [&] {
    if (r.dry_run) d.exec("BEGIN", "begin read");
    std::map<std::string, detail::HeldCounter> held;
    const std::string end = detail::prefix_end(r.key_prefix);
    Stmt q = d.prepare(sc::counters_in_range_sql(sc::Dialect::sqlite, r.key_suffix.size(), !end.empty(), false),
                       "prepare read of counters");
    Impl::text(q.get(), 0, r.key_prefix);
    if (!end.empty()) Impl::text(q.get(), 1, end);
    Impl::text(q.get(), end.empty() ? 1 : 2, r.key_suffix);
    each_row(q, "read counters", [&](sqlite3_stmt* s) {
      held[text_at(s, 0)] = {sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)};
    });
    StoredCounts rows;
    q = d.prepare(sc::count_requests_sql(sc::Dialect::sqlite), "prepare count of requests");
    Impl::int64(q.get(), 0, r.from_us);
    Impl::int64(q.get(), 1, r.to_us);
    each_row(q, "count requests", [&](sqlite3_stmt* s) {
      rows.requests.push_back({int32_t(sqlite3_column_int(s, 0)), text_at(s, 1), sqlite3_column_int64(s, 2)});
    });
    q = d.prepare(sc::count_events_sql(sc::Dialect::sqlite), "prepare count of events");
    Impl::int64(q.get(), 0, r.from_us);
    Impl::int64(q.get(), 1, r.to_us);
    each_row(q, "count events", [&](sqlite3_stmt* s) { rows.events.emplace_back(text_at(s, 0), sqlite3_column_int64(s, 1)); });
    try {
      changes = detail::recount_changes(r, rows, held);
    } catch (const Error& e) {  // refused: a permanent failure, said by the caller
      throw DbError{SQLITE_CONSTRAINT, e.what(), true, false};
    }
    if (r.dry_run) {
      d.exec("COMMIT", "end read");
      return;
    }
    q = d.prepare(sc::counter_set_sql(sc::Dialect::sqlite), "prepare counter set");
    for (const CounterChange& c : changes) {
      if (c.after == c.before) continue;
      Impl::text(q.get(), 0, c.key);
      Impl::int64(q.get(), 1, c.after);
      d.run(q.get(), "set a counter");
    }
  });
  if (!result.ok()) changes.clear();  // rolled back
  return result;
}

WriteResult SqliteSink::open(ms timeout) {
  return impl_->transact(timeout, false, [] {}, /*at_open=*/true);
}

void SqliteSink::close() {
  detail::TimedGate::Hold hold(impl_->gate, std::chrono::hours(24));  // waits out a write
  impl_->close_connection();
}

void SqliteSink::abort_writes() noexcept { impl_->abort_generation.fetch_add(1, std::memory_order_relaxed); }

std::string SqliteSink::name() const { return impl_->name; }

SqliteSinkStats SqliteSink::stats() const {
  const Impl& d = *impl_;
  SqliteSinkStats s;
  s.batches = d.batches;
  s.rows_inserted = d.rows_inserted;
  s.duplicates = d.duplicates;
  s.counter_flushes_applied = d.flushes_applied;
  s.counter_flushes_duplicate = d.flushes_duplicate;
  s.retries = d.retries;
  s.errors = d.errors;
  return s;
}

const SqliteSinkOptions& SqliteSink::options() const noexcept { return impl_->opt; }

}  // namespace reqbus
