// reqbus::Client: option validation, the public calls, and closing live clients at process exit.
#include "reqbus/client.hpp"

#include <cstdlib>
#include <mutex>

#include "analytics/client_impl.hpp"
#include "reqbus/error.hpp"

namespace reqbus {
namespace {

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorCode::invalid_argument, what); }

void check(const ClientOptions& o) {
  if (o.api_key.empty()) bad("api_key: required (the write key)");
  if (!o.base_url.starts_with("http://") && !o.base_url.starts_with("https://"))
    bad("base_url: \"" + o.base_url + "\" is not an http:// or https:// URL");
  if (o.flush_at == 0) bad("flush_at: must be at least 1");
  if (o.flush_interval.count() <= 0) bad("flush_interval: must be positive");
  if (o.open_timeout.count() <= 0) bad("open_timeout: must be positive");
  if (o.read_timeout.count() <= 0) bad("read_timeout: must be positive");
  if (o.max_queue == 0) bad("max_queue: must be at least 1");
  if (o.max_batch_bytes < 1024) bad("max_batch_bytes: must be at least 1024");
  if (o.retry_backoff.count() <= 0) bad("retry_backoff: must be positive");
  if (o.max_backoff < o.retry_backoff) bad("max_backoff: must be >= retry_backoff");
  if (o.max_retry_after.count() < 0) bad("max_retry_after: must not be negative");
  if (o.close_timeout.count() < 0) bad("close_timeout: must not be negative");
  if (o.enqueue_timeout.count() < 0) bad("enqueue_timeout: must not be negative");
  if (o.max_retries > 100) bad("max_retries: more than 100 retries is a misconfiguration");
}

// Live clients, closed by an std::atexit handler. Weak references: a client destroyed before exit
// has simply expired, and one destroyed while the handler runs stays alive until its close ends.
// The registry is leaked on purpose so it outlives every static destructor.
struct ExitRegistry {
  std::mutex mu;
  std::vector<std::pair<std::weak_ptr<Client::Impl>, std::chrono::milliseconds>> clients;
};

ExitRegistry& registry() {
  static ExitRegistry* r = new ExitRegistry;
  return *r;
}

void close_live_clients() {
  std::vector<std::pair<std::shared_ptr<Client::Impl>, std::chrono::milliseconds>> live;
  {
    std::lock_guard lock(registry().mu);
    for (auto& [weak, timeout] : registry().clients)
      if (auto impl = weak.lock()) live.emplace_back(std::move(impl), timeout);
    registry().clients.clear();
  }
  for (auto& [impl, timeout] : live) (void)impl->close(timeout);
}

void register_for_exit(const std::shared_ptr<Client::Impl>& impl, std::chrono::milliseconds timeout) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(close_live_clients); });
  std::lock_guard lock(registry().mu);
  auto& list = registry().clients;
  std::erase_if(list, [](const auto& entry) { return entry.first.expired(); });
  list.emplace_back(impl, timeout);
}

}  // namespace

const char* to_string(ClientError::Kind kind) noexcept {
  switch (kind) {
    case ClientError::Kind::http_status: return "http_status";
    case ClientError::Kind::timeout: return "timeout";
    case ClientError::Kind::network: return "network";
    case ClientError::Kind::dropped: return "dropped";
    case ClientError::Kind::abandoned: return "abandoned";
  }
  return "unknown";
}

Client::Client(ClientOptions options) : close_timeout_(options.close_timeout) {
  check(options);
  const bool at_exit = options.close_at_exit;
  impl_ = std::make_shared<Impl>(std::move(options));
  if (at_exit) register_for_exit(impl_, close_timeout_);
}

Client::~Client() { (void)impl_->close(close_timeout_); }

EnqueueResult Client::identify(std::string user_id, std::string email, std::string traits_json,
                               std::string timezone, CallOptions call) {
  AnalyticsEvent e;
  e.type = AnalyticsType::identify;
  e.user_id = std::move(user_id);
  e.email = std::move(email);
  e.traits_json = std::move(traits_json);
  e.timezone = std::move(timezone);
  e.timestamp = call.timestamp_us;
  e.message_id = std::move(call.message_id);
  return impl_->enqueue(std::move(e));
}

EnqueueResult Client::group(std::string user_id, std::string account_id, std::string name,
                            std::string traits_json, CallOptions call) {
  AnalyticsEvent e;
  e.type = AnalyticsType::group;
  e.user_id = std::move(user_id);
  e.account_id = std::move(account_id);
  e.name = std::move(name);
  e.traits_json = std::move(traits_json);
  e.timestamp = call.timestamp_us;
  e.message_id = std::move(call.message_id);
  return impl_->enqueue(std::move(e));
}

EnqueueResult Client::track(std::string user_id, std::string event, std::string properties_json,
                            CallOptions call) {
  AnalyticsEvent e;
  e.type = AnalyticsType::track;
  e.user_id = std::move(user_id);
  e.event = std::move(event);
  e.properties_json = std::move(properties_json);
  e.timestamp = call.timestamp_us;
  e.message_id = std::move(call.message_id);
  return impl_->enqueue(std::move(e));
}

EnqueueResult Client::enqueue(AnalyticsEvent event) { return impl_->enqueue(std::move(event)); }

ClientReport Client::flush(std::chrono::milliseconds timeout) { return impl_->flush(timeout); }

ClientReport Client::close(std::chrono::milliseconds timeout) { return impl_->close(timeout); }

ClientStats Client::stats() const { return impl_->stats(); }

}  // namespace reqbus
