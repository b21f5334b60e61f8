// libcurl POST with a pool of easy handles (see http_transport.hpp).
#include "analytics/http_transport.hpp"

#include <curl/curl.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace reqbus::http {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Received {
  std::string body;
  bool body_cut = false;
  std::string retry_after;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* r = static_cast<Received*>(user);
  const size_t n = size * count;
  const size_t room = HttpTransport::max_kept_body - std::min(r->body.size(), HttpTransport::max_kept_body);
  r->body.append(data, std::min(n, room));
  if (n > room) r->body_cut = true;
  return n;  // keep reading even when we keep no more: the transfer must complete
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* r = static_cast<Received*>(user);
  const size_t n = size * count;
  std::string_view line(data, n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i)
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    if (match) r->retry_after = trim(line.substr(kName.size()));
  }
  // A new status line (after 100-continue or a redirect) starts a new header block.
  if (line.starts_with("HTTP/")) r->retry_after.clear();
  return n;
}

// State of the progress callback: the caller's abort flag and the read timeout.
struct Progress {
  const std::atomic<bool>* abort = nullptr;
  std::chrono::milliseconds read_timeout{0};
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  curl_off_t last_down = 0, last_up = 0;
  bool read_timed_out = false;
};

int on_progress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  auto* p = static_cast<Progress*>(user);
  if (p->abort != nullptr && p->abort->load()) return 1;
  if (p->read_timeout.count() <= 0) return 0;
  const auto now = std::chrono::steady_clock::now();
  if (dlnow != p->last_down || ulnow != p->last_up) {
    p->last_down = dlnow;
    p->last_up = ulnow;
    p->last_activity = now;
    return 0;
  }
  const bool sent = ultotal > 0 && ulnow == ultotal;  // before that, connect/upload bounds apply
  if (sent && now - p->last_activity > p->read_timeout) {
    p->read_timed_out = true;
    return 1;
  }
  return 0;
}

PostResult::Outcome classify(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return PostResult::Outcome::timeout;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return PostResult::Outcome::connect_failed;
    case CURLE_ABORTED_BY_CALLBACK: return PostResult::Outcome::aborted;
    default: return PostResult::Outcome::network;
  }
}

}  // namespace

const char* to_string(PostResult::Outcome outcome) noexcept {
  switch (outcome) {
    case PostResult::Outcome::response: return "response";
    case PostResult::Outcome::timeout: return "timeout";
    case PostResult::Outcome::connect_failed: return "connect failed";
    case PostResult::Outcome::network: return "network error";
    case PostResult::Outcome::aborted: return "aborted";
  }
  return "unknown";
}

std::string describe(const PostResult& r, std::string_view url) {
  if (r.outcome != PostResult::Outcome::response)
    return std::string(to_string(r.outcome)) + " posting to " + std::string(url) + ": " + r.error;
  std::string out = "HTTP " + std::to_string(r.status) + " from " + std::string(url);
  if (!r.body.empty()) {
    std::string snippet = r.body.substr(0, 200);
    for (char& c : snippet)
      if (c == '\n' || c == '\r') c = ' ';
    out += ": " + snippet;
    if (r.body.size() > 200) out += "...";
  }
  return out;
}

std::optional<std::vector<size_t>> parse_refused(std::string_view body, size_t items) {
  const auto reply = nlohmann::json::parse(body, nullptr, false);
  if (!reply.is_object()) return std::nullopt;
  const auto refused = reply.find("refused");
  if (refused == reply.end() || !refused->is_array() || refused->size() > items) return std::nullopt;
  std::vector<size_t> out;
  out.reserve(refused->size());
  for (const auto& index : *refused) {
    if (!index.is_number_unsigned()) return std::nullopt;
    const size_t i = index.get<size_t>();
    if (i >= items || (!out.empty() && i <= out.back())) return std::nullopt;  // not a list to trust
    out.push_back(i);
  }
  return out;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                          int64_t now_unix_s,
                                                          std::chrono::milliseconds cap) {
  const std::string v = trim(value);
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (v.size() > 9) return cap;  // absurdly large: the cap applies
    return std::min(cap, std::chrono::milliseconds(std::stoll(v) * 1000));
  }
  const time_t when = curl_getdate(v.c_str(), nullptr);
  if (when == -1) return std::nullopt;
  const int64_t delta = static_cast<int64_t>(when) - now_unix_s;
  if (delta <= 0) return std::chrono::milliseconds(0);
  return std::min(cap, std::chrono::milliseconds(delta * 1000));
}

HttpTransport::HttpTransport(size_t max_idle_handles) : max_idle_(max_idle_handles) { global_init(); }

HttpTransport::~HttpTransport() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpTransport::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void HttpTransport::release(void* handle) {
  {
    std::lock_guard lock(mu_);
    if (idle_.size() < max_idle_) {
      idle_.push_back(handle);
      return;
    }
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

PostResult HttpTransport::post(const PostRequest& req) {
  PostResult result;
  CURL* curl = static_cast<CURL*>(acquire());
  if (curl == nullptr) {
    result.error = "curl_easy_init failed";
    return result;
  }
  curl_easy_reset(curl);  // keeps live connections, drops the previous call's options
  Received received;
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("Content-Type: " + req.content_type).c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  if (!req.bearer_token.empty())
    headers = curl_slist_append(headers, ("Authorization: Bearer " + req.bearer_token).c_str());

  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!req.user_agent.empty()) curl_easy_setopt(curl, CURLOPT_USERAGENT, req.user_agent.c_str());
  if (!req.basic_user.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(curl, CURLOPT_USERNAME, req.basic_user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, "");
  }
  const long total_ms = std::max<long>(1, static_cast<long>(req.total_timeout.count()));
  const long connect_ms =
      std::clamp<long>(static_cast<long>(req.connect_timeout.count()), 1, total_ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, total_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &received);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &received);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  Progress progress;
  progress.abort = req.abort;
  progress.read_timeout = req.read_timeout;
  if (req.abort != nullptr || req.read_timeout.count() > 0) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &progress);
  }

  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (code == CURLE_OK) {
    result.outcome = PostResult::Outcome::response;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  } else {
    result.outcome = classify(code);
    result.error = error[0] != '\0' ? std::string(error) : std::string(curl_easy_strerror(code));
    if (code == CURLE_ABORTED_BY_CALLBACK && progress.read_timed_out) {
      result.outcome = PostResult::Outcome::timeout;
      result.error = "no response within the read timeout (" +
                     std::to_string(req.read_timeout.count()) + " ms)";
    }
  }
  result.body = std::move(received.body);
  result.body_cut = received.body_cut;
  result.retry_after = std::move(received.retry_after);
  // A broken connection must not be reused; curl already closes it, the handle stays usable.
  release(curl);
  return result;
}

}  // namespace reqbus::http
