#pragma once
// RequestLogger: publishes one reqbus::RequestLog onto a Bus for every response a
// cpp-httplib server writes. Used by examples/web_server.cpp and by `reqbus demo`.
//
// install(server) takes over three httplib hooks — pre-routing (stamps the start time),
// post-routing (session cookie, before the headers go out) and the logger (called by httplib
// after the response is written: measures duration_ms and publishes). A server that needs those
// hooks for itself cannot use install() as is.
//
// Publishing never slows a response: it happens after the response is written, and
// broadcast() returns a status instead of throwing; every non-ok status is counted in stats().
// Give the Bus a drop policy (Overflow::drop_newest) so a full queue never blocks a server thread.
//
// Sessions (unless RequestLoggerOptions::sessions is false): a random 128-bit id in a cookie; page views are counted per session in a map
// bounded by max_sessions (one not seen lately evicted, by CLOCK; counted) with an idle expiry.
//
// Thread-safety: one RequestLogger may serve any number of httplib worker threads and servers;
// stats() may be called from any thread. It must outlive the servers it is installed on, and
// the Bus must outlive it.
//
// Cost per request (web_bench): no heap allocation for sessions (flat SessionTable, 32 bytes a
// session; a returning visitor locks only its own slot), headers are read in place, and the
// event is published as a RequestLogView of the request's own strings (no copy before the bus
// encodes it).
#include <httplib.h>

#include <atomic>
#include <bit>
#include <cctype>
#include <cstring>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "examples/session_table.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/client_ip.hpp"
#include "reqbus/user_agent.hpp"
#include "reqbus/clock.hpp"
#include "reqbus/error.hpp"

namespace reqbus::examples {

namespace detail {
// The request headers the logger reads, as views into the request.
struct LoggedHeaders {
  std::string_view user_agent, referer, forwarded_for, cookie;
};
}  // namespace detail

struct RequestLoggerOptions {
  std::string topic = kDefaultTopic;           // bus topic the logs go to; default "requests"
  // false: cookie-less logging — no session cookie is read or set, and session_id stays empty
  // (page views 0): for a site that may not set cookies without its visitors' consent.
  // Visitors are still counted, from the node's daily-salted hash of IP and user agent.
  // Default true.
  bool sessions = true;
  std::string session_cookie = "reqbus_sid";   // cookie name carrying the session id
  size_t max_sessions = 100'000;               // sessions remembered (1..2^30, 32 bytes each);
                                               // one not seen lately evicted (CLOCK)
  std::chrono::seconds session_idle{30 * 60};  // a session unseen this long starts over (30 min)
  std::shared_ptr<Clock> clock = system_clock();  // durations, idle expiry and inserted_at
  // Proxies whose X-Forwarded-For is believed (exact addresses). Empty: the TCP peer is the
  // client, and X-Forwarded-For is ignored (anyone could forge it).
  std::vector<std::string> trusted_proxies;
};

struct RequestLoggerStats {
  uint64_t served = 0;            // responses written
  uint64_t published = 0;         // broadcast() returned ok
  uint64_t dropped_newest = 0;    // broadcast() refused: bus queue full (drop_newest)
  uint64_t timed_out = 0;         // broadcast() timed out (block policy)
  uint64_t closed = 0;            // broadcast() after the bus closed
  uint64_t invalid = 0;           // rejected by validate() (not expected: fields are fitted)
  uint64_t unparsed = 0;          // responses to requests without a method (bad request line)
  uint64_t truncated = 0;         // field values cut to RequestLogLimits
  uint64_t sessions_created = 0;
  uint64_t sessions_evicted = 0;  // pushed out by max_sessions
  uint64_t sessions_expired = 0;  // idle longer than session_idle
  uint64_t sessions_failed = 0;   // no random bits for a new id (getrandom failed): the request
                                  // is logged without a session and gets no cookie
  uint64_t sessions_live = 0;
  uint64_t counting_threads = 0;  // threads that have logged a response (a line of counters each)
  uint64_t not_published() const { return dropped_newest + timed_out + closed + invalid + unparsed; }
};


class RequestLogger {
 public:
  explicit RequestLogger(Bus& bus, RequestLoggerOptions options = {});
  RequestLogger(const RequestLogger&) = delete;
  RequestLogger& operator=(const RequestLogger&) = delete;

  void install(httplib::Server& server);
  RequestLoggerStats stats() const;

 private:
  // One request in progress on this thread: httplib runs pre-routing, post-routing and the
  // logger of a request on the same worker thread, one request at a time.
  static constexpr size_t kSessionIdSize = SessionTable::kTextSize;  // 128 bits in lowercase hex
  struct InFlight {
    bool started = false;
    bool has_session = false;
    bool has_headers = false;  // `headers` were read by on_headers (views into the request)
    Clock::time_point start{};
    detail::LoggedHeaders headers;
    char session_id[kSessionIdSize];  // valid when has_session
    uint32_t page_views = 0;
  };
  static InFlight& in_flight();

  void on_start();
  void on_headers(const httplib::Request& req, httplib::Response& res);
  void on_written(const httplib::Request& req, const httplib::Response& res);
  // Counts a page view for the cookie's session, or starts a session. Copies the id into
  // `id`; returns true when the client must be given a new cookie.
  // `now` is the request's start (the clock is read once for both).
  bool touch_session(std::string_view cookie_id, Clock::time_point now, char (&id)[kSessionIdSize],
                     uint32_t& page_views);
  std::string_view fit(std::string_view value, size_t limit);

  Bus& bus_;
  const RequestLoggerOptions options_;

  SessionTable sessions_;  // thread-safe: a returning visitor locks only its own slot

  // One counter per outcome, one increment per response (`served` is their sum), kept per
  // thread: a response writes its own thread's cache line, which no other thread writes, and
  // stats() adds the slots up. (One shared counter moved between the CPUs on every request.)
  enum Outcome : uint8_t { kPublished, kDroppedNewest, kTimedOut, kClosed, kInvalid, kUnparsed, kOutcomes };
  struct alignas(64) OutcomeSlot {
    std::atomic<uint64_t> n[kOutcomes] = {};
    std::thread::id owner;  // the one thread that writes n; set under slots_mu_
  };
  void count(Outcome outcome);
  OutcomeSlot& my_slot();
  const uint64_t instance_;  // tells this logger from one made later at the same address
  mutable std::mutex slots_mu_;
  std::deque<OutcomeSlot> slots_;  // one per thread; guarded by slots_mu_ (growth); never move

  std::atomic<uint64_t> truncated_{0}, sessions_created_{0}, sessions_evicted_{0},
      sessions_expired_{0}, sessions_failed_{0};
};

}  // namespace reqbus::examples

// --- implementation (header-only, so `reqbus demo` can reuse it without another library) ----

namespace reqbus::examples {
namespace detail {


inline bool is_session_id(std::string_view s) {
  SessionTable::Id id;
  return SessionTable::parse(s, id);
}

// The value of cookie `name` in a Cookie header ("a=1; name=value"), or "".
inline std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t end = header.find(';');
    std::string_view pair = header.substr(0, end);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name && pair[name.size()] == '=')
      return pair.substr(name.size() + 1);
    if (end == std::string_view::npos) break;
    header.remove_prefix(end + 1);
  }
  return {};
}

// A header name to look for, as two overlapping words compared at once: equal to a key of
// the same length, ignoring ASCII case, iff (word | mask) == lower for both words. `mask` sets
// 0x20 (the case bit) at letters only; a letter of either case then matches its lowercase form
// and nothing else does, and every other byte ('-') must match exactly. 4..16 bytes.
class HeaderName {
 public:
  template <size_t N>
  constexpr explicit HeaderName(const char (&name)[N]) : size_(N - 1) {
    static_assert(N - 1 >= 4 && N - 1 <= 16, "4..16 bytes");
    const size_t w = size_ >= 8 ? 8 : 4;  // word size; the second word ends at the name's end
    for (size_t i = 0; i < w; ++i) {
      put(lower_[0], mask_[0], i, name[i]);
      put(lower_[1], mask_[1], i, name[size_ - w + i]);
    }
  }
  size_t size() const { return size_; }
  // `key` must be size() bytes long.
  bool matches(std::string_view key) const {
    uint64_t a = 0, b = 0;
    const size_t w = size_ >= 8 ? 8 : 4;
    std::memcpy(&a, key.data(), w);
    std::memcpy(&b, key.data() + size_ - w, w);
    return ((a | mask_[0]) == lower_[0]) & ((b | mask_[1]) == lower_[1]);
  }

 private:
  // Byte i of the word in memory order (the words are loaded with memcpy, little-endian).
  static constexpr void put(uint64_t& lower, uint64_t& mask, size_t i, char c) {
    const bool letter = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    const uint64_t byte = uint8_t(letter ? (c | 0x20) : c);
    lower |= byte << (8 * i);
    if (letter) mask |= uint64_t(0x20) << (8 * i);
  }
  size_t size_;
  uint64_t lower_[2] = {}, mask_[2] = {};
};
static_assert(std::endian::native == std::endian::little, "HeaderName loads little-endian words");

inline constexpr HeaderName kUserAgent("User-Agent"), kReferer("Referer"), kForwardedFor("X-Forwarded-For"),
    kCookie("Cookie");

// The headers the logger reads, in one scan of the request's headers (first value of each,
// read in place). get_header_value would copy each value, and the headers map's own lookup
// calls ::tolower for every character it compares.
inline LoggedHeaders logged_headers(const httplib::Request& req) {
  LoggedHeaders h;
  for (const auto& [key, value] : req.headers) {
    std::string_view* slot = nullptr;
    switch (key.size()) {  // compare lengths first: most headers are none of these
      case 10: if (kUserAgent.matches(key)) slot = &h.user_agent; break;
      case 7: if (kReferer.matches(key)) slot = &h.referer; break;
      case 15: if (kForwardedFor.matches(key)) slot = &h.forwarded_for; break;
      case 6: if (kCookie.matches(key)) slot = &h.cookie; break;
      default: break;
    }
    if (slot && slot->empty()) *slot = value;
  }
  return h;
}

}  // namespace detail

inline RequestLogger::RequestLogger(Bus& bus, RequestLoggerOptions options)
    : bus_(bus),
      options_(std::move(options)),
      sessions_(options_.sessions ? options_.max_sessions : 1),  // cookie-less: never used
      instance_([] {
        static std::atomic<uint64_t> next{1};
        return next.fetch_add(1);
      }()) {
  if (!options_.clock) throw Error(ErrorCode::invalid_argument, "RequestLoggerOptions.clock: null");
  if (options_.max_sessions < 1 || options_.max_sessions > SessionTable::kMaxCapacity)
    throw Error(ErrorCode::invalid_argument, "RequestLoggerOptions.max_sessions: must be 1..2^30");
  if (!is_http_token(options_.session_cookie))
    throw Error(ErrorCode::invalid_argument,
                "RequestLoggerOptions.session_cookie: must be a non-empty HTTP token (RFC 6265 cookie-name)");
}

inline void RequestLogger::install(httplib::Server& server) {
  server.set_pre_routing_handler([this](const httplib::Request&, httplib::Response&) {
    on_start();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_post_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) { on_headers(req, res); });
  server.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) { on_written(req, res); });
}

inline RequestLogger::InFlight& RequestLogger::in_flight() {
  thread_local InFlight current;
  return current;
}

inline void RequestLogger::on_start() {
  InFlight& f = in_flight();
  f.started = true;
  f.start = options_.clock->now();
}

inline void RequestLogger::on_headers(const httplib::Request& req, httplib::Response& res) {
  InFlight& f = in_flight();
  if (!f.started) {  // httplib answered before routing (e.g. a malformed request): time from here
    f.started = true;
    f.start = options_.clock->now();
  }
  if (req.method.empty()) return;  // not a request we can report (see on_written)
  static const std::string kSetCookie = "Set-Cookie";
  f.headers = detail::logged_headers(req);  // the request outlives its logger call
  f.has_headers = true;
  if (!options_.sessions) return;
  bool fresh = false;
  try {
    fresh = touch_session(detail::cookie_value(f.headers.cookie, options_.session_cookie), f.start,
                          f.session_id, f.page_views);
  } catch (const std::system_error&) {  // SessionTable::draw_random: no session rather than no answer
    sessions_failed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  f.has_session = true;
  if (fresh) {
    static constexpr std::string_view kAttributes = "; Path=/; HttpOnly; SameSite=Lax";
    std::string cookie;
    cookie.reserve(options_.session_cookie.size() + 1 + kSessionIdSize + kAttributes.size());
    cookie.append(options_.session_cookie).append(1, '=').append(f.session_id, kSessionIdSize)
        .append(kAttributes);
    // Inserted at the end of the headers: set_header would scan both strings for CR/LF (the
    // name is a checked token and the id is hex) and compare from the root with ::tolower on
    // every character, ~230 instructions a request on web_bench (10 % set a cookie).
    res.headers.emplace_hint(res.headers.end(), kSetCookie, std::move(cookie));
  }
}

inline void RequestLogger::on_written(const httplib::Request& req, const httplib::Response& res) {
  InFlight& f = in_flight();
  const auto end = options_.clock->now();
  if (req.method.empty()) {  // no request line to report; counted, not published
    count(kUnparsed);
    f = InFlight{};
    return;
  }
  // Views into the request (and into this thread's InFlight): broadcast() copies the bytes
  // before it returns, so nothing is copied into a RequestLog first.
  RequestLogView log;
  log.method = fit(req.method, RequestLogLimits::method);
  // A request line httplib could not split has no path: "-", as in the combined log format,
  // rather than a made-up "/" that would count towards the home page.
  log.path = req.path.empty() ? std::string_view("-") : fit(req.path, RequestLogLimits::path);
  log.status_code = uint16_t(res.status >= 100 && res.status <= 599 ? res.status : 500);
  log.duration_ms = f.started ? std::chrono::duration<double, std::milli>(end - f.start).count() : 0.0;
  const detail::LoggedHeaders headers = f.has_headers ? f.headers : detail::logged_headers(req);
  log.user_agent = fit(headers.user_agent, RequestLogLimits::user_agent);
  const std::string ip = client_ip(req.remote_addr, headers.forwarded_for, options_.trusted_proxies);
  log.remote_ip = fit(ip, RequestLogLimits::remote_ip);
  log.referer = fit(headers.referer, RequestLogLimits::referer);
  const char* device = to_string(classify_user_agent(log.user_agent));
  log.device_type = *device ? device : "bot";  // browsers always send a user agent
  log.session_id = std::string_view(f.session_id, f.has_session ? kSessionIdSize : 0);
  log.session_page_views = f.page_views;
  log.inserted_at = options_.clock->unix_us();  // completion time, not publish or flush time
  // request_id, node_id and seq are left empty: the bus fills them.

  switch (bus_.broadcast(log, options_.topic)) {
    case PublishStatus::ok: count(kPublished); break;
    case PublishStatus::dropped_newest: count(kDroppedNewest); break;
    case PublishStatus::timed_out: count(kTimedOut); break;
    case PublishStatus::closed: count(kClosed); break;
    case PublishStatus::invalid: count(kInvalid); break;
  }
  f = InFlight{};
}

inline void RequestLogger::count(Outcome outcome) {
  std::atomic<uint64_t>& n = my_slot().n[outcome];
  n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // only this thread writes it
}

// This thread's slot of this logger: found in a per-thread cache of four (a thread serves one
// logger, or a few), else looked up by thread under the lock, and made only for a thread that
// has none: a thread taking turns between more than four loggers finds its slot again rather
// than making one at each turn.
inline RequestLogger::OutcomeSlot& RequestLogger::my_slot() {
  struct Cached {
    uint64_t instance = 0;
    OutcomeSlot* slot = nullptr;
  };
  thread_local Cached cache[4];
  thread_local unsigned next_victim = 0;
  for (const Cached& c : cache)
    if (c.instance == instance_) return *c.slot;
  const std::thread::id me = std::this_thread::get_id();
  OutcomeSlot* slot = nullptr;
  {
    std::lock_guard lock(slots_mu_);
    for (OutcomeSlot& s : slots_)
      if (s.owner == me) slot = &s;
    if (!slot) {
      slot = &slots_.emplace_back();
      slot->owner = me;
    }
  }
  cache[next_victim++ % 4] = Cached{instance_, slot};
  return *slot;
}

inline bool RequestLogger::touch_session(std::string_view cookie_id, Clock::time_point now,
                                         char (&id)[kSessionIdSize], uint32_t& page_views) {
  SessionTable::Id cookie;
  if (SessionTable::parse(cookie_id, cookie)) {
    switch (sessions_.touch(cookie, now, options_.session_idle, page_views)) {
      case SessionTable::Seen::returning:
        std::memcpy(id, cookie_id.data(), kSessionIdSize);  // parse() took only the id's own text
        return false;
      case SessionTable::Seen::expired:
        sessions_expired_.fetch_add(1, std::memory_order_relaxed);
        break;
      case SessionTable::Seen::unknown:
        break;
    }
  }
  // Drawn before insert() takes the table's lock: a refill of the pool is a system call.
  const SessionTable::Random random = SessionTable::draw_random();
  SessionTable::Id made;
  if (sessions_.insert(now, random, made)) sessions_evicted_.fetch_add(1, std::memory_order_relaxed);
  sessions_created_.fetch_add(1, std::memory_order_relaxed);
  page_views = 1;
  SessionTable::format(made, id);
  return true;
}

// Values longer than the RequestLog limit are cut there (never mid-way through a UTF-8
// character) and counted: a web server logs what it can rather than nothing.
inline std::string_view RequestLogger::fit(std::string_view value, size_t limit) {
  if (value.size() <= limit) return value;
  truncated_.fetch_add(1, std::memory_order_relaxed);
  size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return value.substr(0, cut);
}

inline RequestLoggerStats RequestLogger::stats() const {
  RequestLoggerStats s;
  {
    std::lock_guard lock(slots_mu_);
    s.counting_threads = slots_.size();
    for (const OutcomeSlot& slot : slots_) {
      s.published += slot.n[kPublished].load(std::memory_order_relaxed);
      s.dropped_newest += slot.n[kDroppedNewest].load(std::memory_order_relaxed);
      s.timed_out += slot.n[kTimedOut].load(std::memory_order_relaxed);
      s.closed += slot.n[kClosed].load(std::memory_order_relaxed);
      s.invalid += slot.n[kInvalid].load(std::memory_order_relaxed);
      s.unparsed += slot.n[kUnparsed].load(std::memory_order_relaxed);
    }
  }
  s.truncated = truncated_.load();
  s.served = s.published + s.not_published();  // every response lands in exactly one outcome
  s.sessions_created = sessions_created_.load();
  s.sessions_evicted = sessions_evicted_.load();
  s.sessions_expired = sessions_expired_.load();
  s.sessions_failed = sessions_failed_.load();
  s.sessions_live = sessions_.size();
  return s;
}

}  // namespace reqbus::examples
