// HttpSink: batches as JSON over HTTP (see include/reqbus/http_sink.hpp).
#include "reqbus/http_sink.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>

#include "analytics/http_transport.hpp"
#include "analytics/segment_json.hpp"
#include "reqbus/error.hpp"

namespace reqbus {
namespace {

using std::chrono::milliseconds;

bool is_http_url(const std::string& url) {
  return url.starts_with("http://") || url.starts_with("https://");
}

HttpSinkOptions with_clock(HttpSinkOptions o) {
  if (!o.clock) o.clock = system_clock();
  return o;
}

// The abort flag of the write in progress on this thread (set by HttpSink::write for its
// duration), which abort_writes() sets.
thread_local const std::atomic<bool>* current_abort = nullptr;
bool aborted() { return current_abort != nullptr && current_abort->load(); }
WriteResult abandoned() { return WriteResult::retry_later("http: write abandoned (abort_writes: the writer is shutting down)"); }

}  // namespace

HttpSink::HttpSink(HttpSinkOptions options)
    : opts_(with_clock(std::move(options))),
      transport_(std::make_unique<http::HttpTransport>(opts_.max_idle_connections)) {
  if (opts_.url.empty()) throw Error(ErrorCode::invalid_argument, "url: required");
  if (!is_http_url(opts_.url))
    throw Error(ErrorCode::invalid_argument, "url: \"" + opts_.url + "\" is not an http(s) URL");
  if (!opts_.batch_url.empty() && !is_http_url(opts_.batch_url))
    throw Error(ErrorCode::invalid_argument,
                "batch_url: \"" + opts_.batch_url + "\" is not an http(s) URL");
  if (opts_.connect_timeout.count() <= 0)
    throw Error(ErrorCode::invalid_argument, "connect_timeout: must be positive");
}

HttpSink::~HttpSink() = default;

std::string HttpSink::name() const { return "http:" + opts_.url; }

void HttpSink::abort_writes() noexcept {
  {
    std::lock_guard lock(calls_mu_);
    for (std::atomic<bool>* flag : calls_) flag->store(true);
  }
  calls_cv_.notify_all();  // a pause between resends ends too
}

void HttpSink::pause_until(Clock::time_point until) {
  std::unique_lock lock(calls_mu_);
  opts_.clock->wait_until(lock, calls_cv_, until, [] { return aborted(); });
}

WriteResult HttpSink::write(const std::vector<Message>& batch, milliseconds timeout) {
  std::atomic<bool> abort{false};
  struct Call {  // registered for abort_writes() until this write returns
    HttpSink& sink;
    std::atomic<bool>* flag;
    const std::atomic<bool>* saved = current_abort;
    Call(HttpSink& s, std::atomic<bool>* f) : sink(s), flag(f) {
      std::lock_guard lock(sink.calls_mu_);
      sink.calls_.push_back(flag);
      current_abort = flag;
    }
    ~Call() {
      std::lock_guard lock(sink.calls_mu_);
      std::erase(sink.calls_, flag);
      current_abort = saved;
    }
  } call(*this, &abort);
  const auto deadline = opts_.clock->now() + timeout;
  std::vector<RequestLog> logs;
  std::vector<std::string> events;
  for (const Message& m : batch) {
    if (m.kind == MessageKind::request_sent) {
      logs.push_back(m.request);
      continue;
    }
    std::string json;
    if (auto err = segment::append_json(json, m.analytics); !err.empty())
      return WriteResult::failure("message " + m.analytics.message_id + ": " + err);
    events.push_back(std::move(json));
  }
  if (!logs.empty()) {
    WriteResult r = post_until_taken(opts_.url, std::move(logs), segment::request_logs_body, deadline);
    if (!r.ok()) return r;
  }
  if (!events.empty()) {
    const std::string& url = opts_.batch_url.empty() ? opts_.url : opts_.batch_url;
    auto body_of = [this](const std::vector<std::string>& e) {
      return segment::batch_body(e, opts_.clock->unix_us());  // sentAt: when this body is sent
    };
    return post_until_taken(url, std::move(events), body_of, deadline);
  }
  return WriteResult::success();
}

template <class T, class BodyOf>
WriteResult HttpSink::post_until_taken(const std::string& url, std::vector<T> items, BodyOf body_of,
                                       std::chrono::steady_clock::time_point deadline) {
  milliseconds pause{100};
  while (true) {
    std::string reply;
    bool reply_cut = false;
    WriteResult r = post(url, body_of(items), deadline, &reply, &reply_cut);
    // A 2xx naming refused items (/v1/requests), or a 503 doing so (/v1/batch, r.retry_after).
    if (!r.ok() && r.kind != WriteResult::Kind::retry) return r;
    const auto refused = http::parse_refused(reply, items.size());
    if (refused && refused->empty()) return r;
    if (refused) {
      std::vector<T> rest;
      rest.reserve(refused->size());
      for (const size_t i : *refused) rest.push_back(std::move(items[i]));
      items = std::move(rest);
    } else if (!r.ok() || (!reply_cut && reply.find("\"refused\"") == std::string::npos)) {
      // No list: retry_later sends the whole body again; a 2xx without one took it all.
      return r;
    }
    // Else a 2xx with a list we cannot read (cut, or malformed): any item may have been
    // refused, so all of them are sent again.
    const auto wait = std::max(pause, r.retry_after);
    const auto now = opts_.clock->now();
    if (now + wait >= deadline)
      return WriteResult::retry_later("http: " + std::to_string(items.size()) + " items refused by " + url +
                                          " (its bus was full or closing) until the write timeout",
                                      wait);
    pause_until(now + wait);
    if (aborted()) return abandoned();
    pause = std::min(pause * 2, milliseconds(1000));
  }
}

WriteResult HttpSink::post(const std::string& url, const std::string& body,
                           std::chrono::steady_clock::time_point deadline, std::string* reply_body,
                           bool* reply_cut) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - opts_.clock->now());
  if (left.count() <= 0) return WriteResult::retry_later("http: write timeout reached before " + url);
  http::PostRequest request;
  request.url = url;
  request.body = body;
  request.user_agent = opts_.user_agent;
  request.bearer_token = opts_.bearer_token;
  request.basic_user = opts_.write_key;
  request.connect_timeout = std::min(opts_.connect_timeout, left);
  request.total_timeout = left;
  request.abort = current_abort;
  const http::PostResult result = transport_->post(request);
  if (result.outcome == http::PostResult::Outcome::aborted) return abandoned();
  if (reply_body) *reply_body = result.body;
  if (reply_cut) *reply_cut = result.body_cut;
  if (result.success()) return WriteResult::success();
  std::string reason = http::describe(result, url);
  if (result.outcome != http::PostResult::Outcome::response) return WriteResult::retry_later(std::move(reason));
  if (result.status == 429 || result.status == 503) {
    const auto after = http::parse_retry_after(result.retry_after, opts_.clock->unix_us() / 1'000'000,
                                               opts_.max_retry_after);
    return WriteResult::retry_later(std::move(reason), after.value_or(milliseconds(0)));
  }
  // 408: a proxy or the server timed out reading a slow upload; the batch itself is fine.
  if (result.status == 408 || result.status >= 500) return WriteResult::retry_later(std::move(reason));
  return WriteResult::failure(std::move(reason));
}

}  // namespace reqbus
