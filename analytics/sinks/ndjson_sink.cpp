// NdjsonSink: one buffer per batch, one append, optional fdatasync, truncate back on failure.
#include "reqbus/ndjson_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "analytics/request_json.hpp"
#include "analytics/sinks/timed_gate.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus {
namespace {

using Json = nlohmann::json;

Json event_to_json(const AnalyticsEvent& e) {
  // Schema column names (events table); "" JSON columns become null as in the databases.
  auto json_text = [](const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); };
  return Json{{"message_id", e.message_id}, {"type", to_string(e.type)},
              {"user_id", e.user_id},       {"timestamp", e.timestamp},
              {"event", e.event},           {"email", e.email},
              {"timezone", e.timezone},     {"account_id", e.account_id},
              {"name", e.name},             {"traits", json_text(e.traits_json)},
              {"properties", json_text(e.properties_json)},
              {"node_id", e.node_id},       {"seq", e.seq}};
}

[[noreturn]] void bad_line(const std::string& what) {
  throw Error(ErrorCode::decode, "ndjson: " + what);
}

std::string get_string(const Json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_string()) bad_line(std::string(key) + ": must be a string");
  return it->get<std::string>();
}

template <class Int>
Int get_int(const Json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return 0;
  if (!it->is_number_integer()) bad_line(std::string(key) + ": must be an integer");
  return it->get<Int>();
}

AnalyticsEvent event_from_json(const Json& o, MessageKind kind) {
  AnalyticsEvent e;
  e.type = static_cast<AnalyticsType>(kind);
  if (auto t = get_string(o, "type"); !t.empty() && t != to_string(e.type))
    bad_line("type: \"" + t + "\" does not match kind");
  e.message_id = get_string(o, "message_id");
  e.user_id = get_string(o, "user_id");
  e.timestamp = get_int<int64_t>(o, "timestamp");
  e.event = get_string(o, "event");
  e.email = get_string(o, "email");
  e.timezone = get_string(o, "timezone");
  e.account_id = get_string(o, "account_id");
  e.name = get_string(o, "name");
  e.traits_json = get_string(o, "traits");
  e.properties_json = get_string(o, "properties");
  e.node_id = get_string(o, "node_id");
  e.seq = get_int<uint64_t>(o, "seq");
  if (std::string err = validate(e); !err.empty()) bad_line(err);
  return e;
}

// The duplicate filter: the most recently written ids, bounded, least recently seen evicted.
class RecentIds {
 public:
  explicit RecentIds(size_t capacity) : capacity_(capacity) {}
  // True when `id` was remembered (and refreshes it).
  bool seen(const std::string& id) {
    auto it = index_.find(id);
    if (it == index_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void remember(std::string id) {
    if (capacity_ == 0 || seen(id)) return;
    order_.push_front(std::move(id));
    index_.emplace(order_.front(), order_.begin());
    if (order_.size() > capacity_) {
      index_.erase(order_.back());
      order_.pop_back();
    }
  }

 private:
  const size_t capacity_;
  std::list<std::string> order_;  // most recent first; index_ keys view these strings
  std::unordered_map<std::string_view, std::list<std::string>::iterator> index_;
};

std::string id_of(const Message& m) {
  if (m.kind == MessageKind::request_sent)
    return m.request.request_id.empty() ? std::string() : "r:" + m.request.request_id;
  return m.analytics.message_id.empty() ? std::string() : "e:" + m.analytics.message_id;
}

bool is_transient_errno(int err) {
  return err == ENOSPC || err == EIO || err == EDQUOT || err == EINTR || err == EAGAIN ||
         err == EMFILE || err == ENFILE || err == ENOMEM;
}

}  // namespace

std::string to_ndjson(const Message& m, bool* replaced) {
  Json j;
  bool request_replaced = false;  // to_json() replaces a request's invalid UTF-8 itself
  if (m.kind == MessageKind::request_sent) {
    j = reqbus::json::to_json(m.request, &request_replaced);
  } else {
    j = event_to_json(m.analytics);
  }
  j["kind"] = to_string(m.kind);
  if (replaced) *replaced = request_replaced;
  try {
    return j.dump();
  } catch (const Json::type_error&) {  // invalid UTF-8: JSON cannot carry raw bytes
    if (replaced) *replaced = true;
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

Message from_ndjson(std::string_view line) {
  Json j = Json::parse(line, nullptr, false);
  if (j.is_discarded()) bad_line("not valid JSON");
  if (!j.is_object()) bad_line("not a JSON object");
  const std::string kind = get_string(j, "kind");
  Message m;
  if (kind == "request_sent") {
    m.kind = MessageKind::request_sent;
    if (std::string e = reqbus::json::from_json(j, m.request); !e.empty()) bad_line(e);
  } else if (kind == "identify" || kind == "group" || kind == "track") {
    m.kind = kind == "identify" ? MessageKind::identify
             : kind == "group"  ? MessageKind::group
                                : MessageKind::track;
    m.analytics = event_from_json(j, m.kind);
  } else {
    bad_line("kind: \"" + kind + "\" is not request_sent, identify, group or track");
  }
  return m;
}

struct NdjsonSink::Impl {
  explicit Impl(NdjsonSinkOptions o) : opt(std::move(o)), name("ndjson:" + opt.path),
                                       recent(opt.dedup_capacity) {
    if (opt.path.empty()) throw Error(ErrorCode::invalid_argument, "NdjsonSinkOptions.path: empty");
    if (opt.retry_after.count() < 0)
      throw Error(ErrorCode::invalid_argument, "NdjsonSinkOptions.retry_after: negative");
  }
  ~Impl() { close_file(); }

  const NdjsonSinkOptions opt;
  const std::string name;
  detail::TimedGate gate;  // held while using fd and recent
  int fd = -1;
  RecentIds recent;
  std::atomic<uint64_t> batches{0}, lines{0}, duplicates{0}, replaced{0}, retries{0}, errors{0};
  RateLimiter log_limiter;

  void close_file() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  WriteResult os_error(const char* what, int err) {
    std::string reason = name + ": " + what + ": " + std::strerror(err);
    close_file();  // reopen next time: the file may have been fixed or replaced
    if (is_transient_errno(err)) {
      ++retries;
      return WriteResult::retry_later(std::move(reason), opt.retry_after);
    }
    ++errors;
    log_limiter.log(LogLevel::error, reason);
    return WriteResult::failure(std::move(reason));
  }

  WriteResult append(const std::string& buf) {
    if (fd < 0) {
      fd = ::open(opt.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return os_error("open", errno);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) return os_error("fstat", errno);
    const off_t before = st.st_size;  // a single writer per sink: truncating back is safe
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        [[maybe_unused]] int ignored = ::ftruncate(fd, before);  // no torn batch left behind
        return os_error("write", err);
      }
      done += static_cast<size_t>(n);
    }
    if (opt.fsync_each_batch && ::fdatasync(fd) != 0) {
      const int err = errno;
      [[maybe_unused]] int ignored = ::ftruncate(fd, before);
      return os_error("fdatasync", err);
    }
    return WriteResult::success();
  }
};

NdjsonSink::NdjsonSink(NdjsonSinkOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
NdjsonSink::~NdjsonSink() = default;

WriteResult NdjsonSink::write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  detail::TimedGate::Hold hold(d.gate, timeout);
  if (!hold.acquired()) {
    ++d.retries;
    return WriteResult::retry_later(d.name + ": another write held the file for " +
                                        std::to_string(timeout.count()) + " ms",
                                    d.opt.retry_after);
  }
  std::string buf;
  std::vector<std::string> ids;
  std::unordered_set<std::string> in_batch;
  uint64_t skipped = 0, replaced = 0;
  for (const Message& m : batch) {
    std::string id = id_of(m);
    if (!id.empty() && d.opt.dedup_capacity > 0) {
      if (d.recent.seen(id) || !in_batch.insert(id).second) {
        ++skipped;
        continue;
      }
      ids.push_back(std::move(id));
    }
    bool bad_utf8 = false;
    buf += to_ndjson(m, &bad_utf8);
    buf += '\n';
    replaced += bad_utf8;
  }
  if (!buf.empty()) {
    WriteResult r = d.append(buf);
    if (!r.ok()) return r;
  }
  for (std::string& id : ids) d.recent.remember(std::move(id));
  ++d.batches;
  d.lines += batch.size() - skipped;
  d.duplicates += skipped;
  d.replaced += replaced;
  return WriteResult::success();
}

std::string NdjsonSink::name() const { return impl_->name; }

void NdjsonSink::reopen() {
  detail::TimedGate::Hold hold(impl_->gate, std::chrono::hours(24));  // waits out a write
  impl_->close_file();
}

NdjsonSinkStats NdjsonSink::stats() const {
  const Impl& d = *impl_;
  NdjsonSinkStats s;
  s.batches = d.batches;
  s.lines_written = d.lines;
  s.duplicates_skipped = d.duplicates;
  s.invalid_utf8_replaced = d.replaced;
  s.retries = d.retries;
  s.errors = d.errors;
  return s;
}

}  // namespace reqbus
