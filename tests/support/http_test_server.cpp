#include "tests/support/http_test_server.hpp"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace reqbus::test {
namespace {

bool iequals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string base64_decode(const std::string& in) {
  static const std::string chars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    if (c == '=') break;
    const auto pos = chars.find(c);
    if (pos == std::string::npos) return {};
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

}  // namespace

std::string RecordedRequest::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

std::string RecordedRequest::basic_user(std::string* password) const {
  const std::string auth = header("Authorization");
  if (!auth.starts_with("Basic ")) return {};
  const std::string decoded = base64_decode(auth.substr(6));
  const auto colon = decoded.find(':');
  if (password != nullptr) *password = colon == std::string::npos ? "" : decoded.substr(colon + 1);
  return decoded.substr(0, colon);
}

HttpTestServer::HttpTestServer() : server_(std::make_unique<httplib::Server>()) {
  // Idle kept-alive connections hold a worker thread until this passes; keep shutdown quick.
  server_->set_keep_alive_timeout(1);
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { handle(&req, &res); };
  server_->Post(".*", handler);
  server_->Get(".*", handler);
  server_->Put(".*", handler);
  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("HttpTestServer: cannot bind 127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // The port accepts connections from bind on, but httplib 0.11's stop() is a no-op until the
  // listener thread has marked itself running (and has no wait_until_ready()), so wait for that
  // here: a server destroyed right away must still be stoppable.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server_->is_running()) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("HttpTestServer: listener did not start");
    std::this_thread::yield();
  }
}

HttpTestServer::~HttpTestServer() {
  release_hangs();
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string HttpTestServer::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void HttpTestServer::push(Reply reply) {
  std::lock_guard lock(mu_);
  script_.push_back(std::move(reply));
}

void HttpTestServer::set_default(Reply reply) {
  std::lock_guard lock(mu_);
  default_reply_ = std::move(reply);
}

bool HttpTestServer::wait_for_requests(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

bool HttpTestServer::wait_for_answers(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return answered_ >= n; });
}

size_t HttpTestServer::request_count() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

std::vector<RecordedRequest> HttpTestServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

RecordedRequest HttpTestServer::request(size_t index) const {
  std::lock_guard lock(mu_);
  if (index >= requests_.size()) throw std::out_of_range("HttpTestServer: no request " + std::to_string(index));
  return requests_[index];
}

void HttpTestServer::release_hangs() {
  {
    std::lock_guard lock(mu_);
    release_ = true;
  }
  cv_.notify_all();
}

void HttpTestServer::handle(const void* request, void* response) {
  const auto& req = *static_cast<const httplib::Request*>(request);
  auto& res = *static_cast<httplib::Response*>(response);
  Reply reply;
  {
    std::unique_lock lock(mu_);
    RecordedRequest rec{req.method, req.path, req.body, {}};
    for (const auto& [k, v] : req.headers) rec.headers.emplace_back(k, v);
    requests_.push_back(std::move(rec));
    if (!script_.empty()) {
      reply = std::move(script_.front());
      script_.pop_front();
    } else {
      reply = default_reply_;
    }
    cv_.notify_all();
    if (reply.kind == Reply::Kind::hang)
      cv_.wait_for(lock, reply.hang_bound, [&] { return release_; });
  }
  if (reply.kind == Reply::Kind::drop) {
    // Promise a body, send the headers, then fail the provider: httplib closes the socket.
    res.set_content_provider(
        1024, "application/json",
        [](size_t, size_t, httplib::DataSink&) { return false; });
  } else {
    res.status = reply.status;
    if (!reply.retry_after.empty()) res.set_header("Retry-After", reply.retry_after);
    res.set_content(reply.body, "application/json");
  }
  {
    std::lock_guard lock(mu_);
    ++answered_;
  }
  cv_.notify_all();
}

}  // namespace reqbus::test
