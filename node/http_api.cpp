#include "node/http_api.hpp"

#include <httplib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <fcntl.h>

#include <algorithm>
#include <filesystem>
#include <charconv>
#include <cctype>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "analytics/segment_json.hpp"
#include "examples/bind_server.hpp"
#include "node/assets.hpp"
#include "node/http_pool.hpp"
#include "reqbus/error.hpp"

namespace reqbus::node {
namespace {

constexpr size_t kMaxErrorsListed = 50;
// Items in one /v1/requests body (NDJSON lines or array elements): a RequestLog is ~200 bytes,
// so 8 MiB of real logs is ~40,000; a body of millions of "{}" would cost ~80 bytes of memory
// for each 3 bytes sent before it was refused item by item.
constexpr size_t kMaxItemsPerBody = 100'000;

std::string basic_auth_user(const httplib::Request& req) {
  const std::string header = req.get_header_value("Authorization");
  if (header.rfind("Basic ", 0) != 0) return {};
  const std::string b64 = header.substr(6);
  if (b64.empty() || b64.size() > 4096) return {};
  std::string decoded(b64.size(), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()), int(b64.size()));
  if (n < 0) return {};
  // DecodeBlock decodes the padding as zero bytes: drop one per '=' (at most two in valid
  // base64; "====" decodes to 3 bytes, and cutting 4 would wrap the length).
  size_t pad = 0;
  for (size_t i = b64.size(); i > 0 && b64[i - 1] == '='; --i) ++pad;
  if (pad > 2 || pad > size_t(n)) return {};
  decoded.resize(size_t(n) - pad);
  return decoded.substr(0, decoded.find(':'));
}

void json_reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

nlohmann::json error_list(const std::vector<segment::ItemError>& errors) {
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < errors.size() && i < kMaxErrorsListed; ++i)
    list.push_back({{"index", errors[i].index}, {"error", errors[i].message}});
  return list;
}

// The body indices of the `valid` items a parser kept, given the ones it rejected: the valid
// items are the others, in order. So a later (bus) rejection names the item the client sent.
std::vector<size_t> valid_item_indices(size_t valid, const std::vector<segment::ItemError>& rejected) {
  std::vector<bool> is_rejected(valid + rejected.size(), false);
  for (const auto& e : rejected)
    if (e.index < is_rejected.size()) is_rejected[e.index] = true;
  std::vector<size_t> out;
  out.reserve(valid);
  for (size_t i = 0; i < is_rejected.size() && out.size() < valid; ++i)
    if (!is_rejected[i]) out.push_back(i);
  while (out.size() < valid) out.push_back(out.empty() ? 0 : out.back() + 1);
  return out;
}

// The answer to a body of items: counts, the first kMaxErrorsListed errors in body order, and
// every item the bus refused ("refused": indices, ascending, never cut short). Those can get in
// on a later try (the bus was full or closing), so a sender resends exactly them; the invalid
// ones will not get better.
nlohmann::json items_reply(size_t accepted, std::vector<segment::ItemError>& rejected,
                           const std::vector<size_t>& refused) {
  std::stable_sort(rejected.begin(), rejected.end(),
                   [](const segment::ItemError& a, const segment::ItemError& b) { return a.index < b.index; });
  return {{"accepted", accepted}, {"rejected", rejected.size()}, {"errors", error_list(rejected)},
          {"refused", refused}};
}

}  // namespace

class HttpApi::Impl {
 public:
  Impl(HttpApiOptions o, HttpApiHooks h) : options(std::move(o)), hooks(std::move(h)) {}

  void routes();
  bool authorized(const httplib::Request& req) const;
  bool write_key_accepted(const httplib::Request& req) const;  // for /v1/batch
  void reply_too_large(httplib::Response& res) const;
  bool refuse_body_framing(const httplib::Request& req, httplib::Response& res) const;
  void post_requests(const std::string& body, httplib::Response& res);
  void post_batch(const httplib::Request& req, const std::string& body, httplib::Response& res);
  // Publishes the parsed items (items[i] is item item_index[i] of the body); the bus's refusals
  // join `rejected` as "bus: <status>". Counts both; returns the reply (see items_reply).
  template <class Item, class Publish>
  nlohmann::json publish_items(const std::vector<Item>& items, const std::vector<size_t>& item_index,
                               const Publish& publish, std::vector<segment::ItemError>& rejected) {
    size_t accepted = 0;
    std::vector<size_t> refused;
    // A bus that timed out (block policy: each try waits up to block_timeout) or closed on one
    // item refuses the rest without being asked: a 100,000-item body would otherwise hold this
    // server thread for up to 100,000 waits (hours) while the bus is full. The sender resends
    // the refused items later.
    std::optional<PublishStatus> gave_up;
    for (size_t i = 0; i < items.size(); ++i) {
      const PublishStatus s = gave_up ? *gave_up : publish(items[i]);
      if (s == PublishStatus::timed_out || s == PublishStatus::closed) gave_up = s;
      if (s == PublishStatus::ok) {
        ++accepted;
        continue;
      }
      rejected.push_back({item_index[i], std::string("bus: ") + to_string(s)});
      if (s == PublishStatus::invalid) continue;  // sending it again cannot help
      refused.push_back(item_index[i]);
      items_refused.fetch_add(1);
    }
    items_accepted += accepted;
    items_rejected += rejected.size() - refused.size();  // `rejected` lists both (the reply's count)
    return items_reply(accepted, rejected, refused);
  }
  void stream(const httplib::Request& req, httplib::Response& res);
  std::string own_metrics() const;

  const HttpApiOptions options;
  const HttpApiHooks hooks;
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};
  bool listen_done = false;  // listen_after_bind() returned; guarded by stop_mu
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  std::atomic<uint64_t> requests{0}, items_accepted{0}, items_rejected{0}, items_refused{0}, bodies_rejected{0},
      unauthorized{0}, stream_clients{0};
  const std::shared_ptr<PoolStats> pool = std::make_shared<PoolStats>();  // the worker threads
};

// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
bool same_secret(const std::string& given, const std::string& secret) {
  return given.size() == secret.size() && CRYPTO_memcmp(given.data(), secret.data(), secret.size()) == 0;
}

// The credentials of `Authorization: Bearer <credentials>`; the scheme is case-insensitive
// (RFC 7235). "" when the header is absent or of another scheme.
std::string bearer_credentials(const httplib::Request& req) {
  const std::string header = req.get_header_value("Authorization");
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (char(std::tolower(static_cast<unsigned char>(header[i]))) != kScheme[i]) return {};
  const size_t start = header.find_first_not_of(' ', kScheme.size());
  return start == std::string::npos ? std::string() : header.substr(start);
}

// Routes anyone may read: the health check, and the dashboard's page and assets (static files,
// no data; the page reads its data from /api/stream with the token from its own URL).
bool is_public(const httplib::Request& req) {
  if (req.path == "/healthz") return true;
  return (req.method == "GET" || req.method == "HEAD") && (req.path == "/" || req.path.rfind("/assets/", 0) == 0);
}

// The methods a route takes, for an Allow header; "" for a path that is no route.
std::string_view route_methods(const std::string& path) {
  if (path == "/v1/requests" || path == "/v1/batch") return "POST, OPTIONS";
  if (path == "/api/stats" || path == "/api/stream" || path == "/metrics" || path == "/healthz" || path == "/" ||
      path.rfind("/assets/", 0) == 0)
    return "GET, HEAD, OPTIONS";
  return {};
}

bool takes(std::string_view methods, std::string_view method) {
  for (size_t at = methods.find(method); at != std::string_view::npos; at = methods.find(method, at + 1)) {
    const size_t end = at + method.size();
    if ((at == 0 || methods[at - 1] == ' ') && (end == methods.size() || methods[end] == ',')) return true;
  }
  return false;
}

bool HttpApi::Impl::authorized(const httplib::Request& req) const {
  if (options.bearer_token.empty()) return true;
  if (same_secret(bearer_credentials(req), options.bearer_token)) return true;
  // ?token= only where a browser cannot send a header (EventSource): a token in other URLs
  // ends up in proxies' and servers' access logs.
  return req.method == "GET" && req.path == "/api/stream" && req.has_param("token") &&
         same_secret(req.get_param_value("token"), options.bearer_token);
}

bool HttpApi::Impl::write_key_accepted(const httplib::Request& req) const {
  const std::string key = basic_auth_user(req);
  if (!options.write_keys.empty()) {
    bool found = false;
    for (const std::string& k : options.write_keys) found |= same_secret(key, k);  // no early exit
    return found;
  }
  // No write keys configured: the node's token guards /v1/batch too, as the write key (what
  // Segment clients send) or as a bearer token. Without either, the endpoint is open (the
  // default listener is loopback only).
  return options.bearer_token.empty() || same_secret(key, options.bearer_token) || authorized(req);
}

void HttpApi::Impl::reply_too_large(httplib::Response& res) const {
  json_reply(res, 413, {{"error", "request body too large (max " + std::to_string(options.max_body_bytes) + " bytes)"}});
}

// Refuses (and answers) a request whose body cannot be read safely, before any of it is read.
bool HttpApi::Impl::refuse_body_framing(const httplib::Request& req, httplib::Response& res) const {
  // RFC 9112 6.3: a Content-Length that is not digits, two of them, or one beside
  // Transfer-Encoding leave the body's end ambiguous (the means of request smuggling behind a
  // proxy that reads it otherwise): 400, and the connection is closed.
  if (const size_t lengths = req.get_header_value_count("Content-Length"); lengths > 0) {
    const std::string value = req.get_header_value("Content-Length");
    if (lengths > 1 || req.has_header("Transfer-Encoding") || value.empty() ||
        value.find_first_not_of("0123456789") != std::string::npos) {
      res.set_header("Connection", "close");
      json_reply(res, 400, {{"error", "ambiguous body length: one Content-Length of digits, without Transfer-Encoding"}});
      return true;
    }
  }
  // httplib reads chunked bodies only; any other transfer coding was waited on for the read
  // timeout, then called an incomplete body.
  if (req.has_header("Transfer-Encoding")) {
    std::string coding = req.get_header_value("Transfer-Encoding");
    for (char& c : coding) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (coding != "chunked") {
      res.set_header("Connection", "close");
      json_reply(res, 501, {{"error", "only Transfer-Encoding: chunked is supported"}});
      return true;
    }
  }
  // A request with neither Content-Length nor Transfer-Encoding has an empty body (RFC 9112
  // 6.3); httplib 0.11 read one "until the connection closes": a client that did not close
  // waited out the 10 s read timeout, and one that did had that data stored. Refused at once.
  if ((req.method == "POST" || req.method == "PUT" || req.method == "PATCH") && !req.has_header("Content-Length") &&
      !req.has_header("Transfer-Encoding")) {
    res.set_header("Connection", "close");  // whatever follows is not a request
    json_reply(res, 411, {{"error", "length required: send Content-Length (or Transfer-Encoding: chunked)"}});
    return true;
  }
  // A declared length over the limit is refused before any of the body is read.
  if (req.has_header("Content-Length") &&
      req.get_header_value<uint64_t>("Content-Length") > uint64_t(options.max_body_bytes)) {
    res.set_header("Connection", "close");
    reply_too_large(res);
    return true;
  }
  // Only the two intake routes take a body, and they read it themselves, capped (read_body).
  // On any other route httplib 0.11 would read a chunked body of any size into memory before
  // answering (CVE-2025-46728, fixed in httplib 0.20.1), without credentials on /healthz:
  // refused before a byte of it is read. (A Content-Length body is capped by httplib.)
  const bool intake = req.method == "POST" && (req.path == "/v1/requests" || req.path == "/v1/batch");
  if (!intake && req.has_header("Transfer-Encoding")) {
    res.set_header("Connection", "close");  // the unread body must not be taken for a request
    json_reply(res, 411, {{"error", "a chunked request body is taken only by POST /v1/requests and /v1/batch"}});
    return true;
  }
  return false;
}

void HttpApi::Impl::routes() {
  server.new_task_queue = [this] {
    return new ElasticPool(size_t(options.threads), size_t(options.max_threads), std::chrono::seconds(30), pool);
  };
  server.set_tcp_nodelay(true);  // headers and body go out in separate send()s: no delayed-ACK wait
  server.set_payload_max_length(options.max_body_bytes);
  server.set_read_timeout(10, 0);
  // httplib's stop() waits out idle keep-alive connections (5 s by default); a browser keeps one
  // open, and that would eat the node's whole shutdown deadline.
  server.set_keep_alive_timeout(1);
  server.set_write_timeout(10, 0);
  server.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    requests.fetch_add(1, std::memory_order_relaxed);
    const int st = res.status;
    if (st == 400 || st == 411 || st == 413 || st == 501) bodies_rejected.fetch_add(1, std::memory_order_relaxed);
  });
  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (refuse_body_framing(req, res)) return httplib::Server::HandlerResponse::Handled;
    // /v1/batch authenticates by write key (Segment clients cannot send a bearer token).
    if (is_public(req) || req.path == "/v1/batch" || authorized(req))
      return httplib::Server::HandlerResponse::Unhandled;
    unauthorized.fetch_add(1, std::memory_order_relaxed);
    res.set_header("WWW-Authenticate", "Bearer");
    if (req.has_header("Transfer-Encoding") || req.get_header_value<uint64_t>("Content-Length") > 0)
      res.set_header("Connection", "close");  // its body is not read: not to be taken for a request
    json_reply(res, 401, {{"error", "missing or wrong bearer token"}});
    return httplib::Server::HandlerResponse::Handled;
  });
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    // httplib answers a route asked with a method it does not take 404, as an unknown path:
    // 405 with the methods it takes (RFC 9110 15.5.6).
    if (const std::string_view allow = route_methods(req.path);
        res.status == 404 && !allow.empty() && !takes(allow, req.method)) {
      res.set_header("Allow", std::string(allow));
      json_reply(res, 405, {{"error", req.path + " takes " + std::string(allow) + ", not " + req.method}});
      return;
    }
    if (!res.body.empty()) return;
    const char* what = res.status == 413 ? "request body too large" : res.status == 404 ? "not found" : "bad request";
    json_reply(res, res.status, {{"error", what}});
  });

  // The bodies are read here rather than by httplib: it enforces max_body_bytes on a
  // Content-Length, but reads a chunked body of any size into memory.
  auto read_body = [this](const httplib::Request& req, const httplib::ContentReader& reader, std::string& body,
                          httplib::Response& res) {
    bool too_large = false;
    const bool complete = reader([&](const char* data, size_t n) {
      if (body.size() + n > options.max_body_bytes) {
        too_large = true;
        return false;  // stop reading; the connection is closed after the answer
      }
      body.append(data, n);
      return true;
    });
    if (complete) return true;
    // A body cut short (the client went away, or sent less than its Content-Length) is refused
    // whole: publishing the lines that did arrive would store part of a request.
    res.set_header("Connection", "close");
    if (too_large || res.status == 413) reply_too_large(res);
    // httplib decodes these three (others it passes through as they are).
    else if (const std::string coding = req.get_header_value("Content-Encoding"); coding == "gzip" || coding == "deflate" || coding == "br")
      json_reply(res, 400, {{"error", "request body incomplete, or not valid " + coding + " (its Content-Encoding)"}});
    else json_reply(res, 400, {{"error", "incomplete request body"}});
    return false;
  };
  server.Post("/v1/requests", [this, read_body](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    std::string body;
    if (read_body(req, reader, body, res)) post_requests(body, res);
  });
  server.Post("/v1/batch", [this, read_body](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    std::string body;
    if (read_body(req, reader, body, res)) post_batch(req, body, res);
  });
  server.Get("/api/stats", [this](const httplib::Request& req, httplib::Response& res) {
    json_reply(res, 200, hooks.stats(req.get_param_value("node")));
  });
  server.Get("/api/stream", [this](const httplib::Request& req, httplib::Response& res) { stream(req, res); });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content((hooks.metrics ? hooks.metrics() : std::string()) + own_metrics(),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    const std::string why = hooks.health ? hooks.health() : std::string();
    res.status = why.empty() ? 200 : 503;
    res.set_content(why.empty() ? "ok\n" : why + "\n", "text/plain");
  });
  auto serve_asset = [](std::string_view name, httplib::Response& res) {
    const Asset* a = find_asset(name);
    if (!a) {
      res.status = 404;
      return;
    }
    res.set_content(a->data, a->size, std::string(a->content_type).c_str());
    res.set_header("Cache-Control", "no-cache");
    res.set_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'");
    res.set_header("X-Content-Type-Options", "nosniff");
  };
  server.Options(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) {
    const std::string_view allow = route_methods(req.path);
    if (allow.empty()) return json_reply(res, 404, {{"error", "not found"}});
    res.status = 204;
    res.set_header("Allow", std::string(allow));
  });
  server.Get("/", [serve_asset](const httplib::Request&, httplib::Response& res) { serve_asset("index.html", res); });
  server.Get(R"(/assets/([A-Za-z0-9_.\-]+))", [serve_asset](const httplib::Request& req, httplib::Response& res) {
    serve_asset(req.matches[1].str(), res);
  });
}

void HttpApi::Impl::post_requests(const std::string& body, httplib::Response& res) {
  segment::ParsedRequestLogs parsed;
  size_t first = 0;
  while (first < body.size() && std::isspace(static_cast<unsigned char>(body[first]))) ++first;
  const bool array = first < body.size() && body[first] == '[';
  segment::ParseLimits limits;
  limits.max_body_bytes = options.max_body_bytes;
  limits.max_items = kMaxItemsPerBody;
  std::vector<size_t> item_index;  // parsed.logs[i] is item item_index[i] of the body
  if (array) {
    if (auto why = segment::parse_request_logs(body, parsed, limits); !why.empty()) {
      json_reply(res, 400, {{"error", why}});
      return;
    }
    item_index = valid_item_indices(parsed.logs.size(), parsed.rejected);
  } else {  // NDJSON: each line stands alone
    size_t index = 0, pos = 0;
    while (pos < body.size()) {
      size_t end = body.find('\n', pos);
      if (end == std::string::npos) end = body.size();
      std::string_view line(body.data() + pos, end - pos);
      pos = end + 1;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
      if (line.empty()) continue;
      if (index == kMaxItemsPerBody) {
        json_reply(res, 400, {{"error", "body: more items than the limit of " + std::to_string(kMaxItemsPerBody)}});
        return;
      }
      RequestLog log;
      if (auto why = segment::parse_request_log(line, log); why.empty()) {
        parsed.logs.push_back(std::move(log));
        item_index.push_back(index);
      } else
        parsed.rejected.push_back({index, why});
      ++index;
    }
    if (parsed.logs.empty() && parsed.rejected.empty()) {
      json_reply(res, 400, {{"error", "empty body: send NDJSON or a JSON array of RequestLogs"}});
      return;
    }
  }
  nlohmann::json reply = publish_items(parsed.logs, item_index, hooks.publish_request, parsed.rejected);
  // Items the bus refused are not stored: a sender that reads only the status (a log shipper)
  // must not take a 2xx for "all stored" (helper-55). 503 with the same body: reqbus ingest and
  // reqbus's Client send just the "refused" ones again; others resend the body, which the store
  // keeps once where items carry a request_id.
  const bool refused = !reply["refused"].empty();
  if (refused) res.set_header("Retry-After", "1");
  json_reply(res, refused ? 503 : 202, reply);
}

void HttpApi::Impl::post_batch(const httplib::Request& req, const std::string& body, httplib::Response& res) {
  if (!write_key_accepted(req)) {
    unauthorized.fetch_add(1, std::memory_order_relaxed);
    res.set_header("WWW-Authenticate", "Basic realm=\"reqbus\"");
    json_reply(res, 401, {{"success", false}, {"error", "unknown write key"}});
    return;
  }
  segment::ParsedBatch parsed;
  segment::ParseLimits limits;
  limits.max_body_bytes = options.max_body_bytes;
  if (auto why = segment::parse_batch(body, parsed, limits); !why.empty()) {
    json_reply(res, 400, {{"success", false}, {"error", why}});
    return;
  }
  const std::vector<size_t> item_index = valid_item_indices(parsed.events.size(), parsed.rejected);
  nlohmann::json reply = publish_items(parsed.events, item_index, hooks.publish_event, parsed.rejected);
  const bool refused = !reply["refused"].empty();
  // Segment clients take any 2xx as "all stored". Events the bus refused (full, or closing) would
  // then be lost without the sender knowing: answer 503 instead, so every client sends the batch
  // again. A client that reads "refused" (reqbus's Client) sends just those; one that resends it
  // all makes duplicates that the store keeps once (keyed by message_id).
  reply["success"] = !refused;
  if (refused) res.set_header("Retry-After", "1");
  json_reply(res, refused ? 503 : 200, reply);
}

void HttpApi::Impl::stream(const httplib::Request& req, httplib::Response& res) {
  // Each stream client holds a server thread for as long as it stays; at most half of the
  // threads may be held so, or a few dashboards would leave none for /v1/requests.
  const size_t thread_cap = size_t(std::max(options.threads, options.max_threads));  // as ElasticPool takes them
  const size_t max_streams = std::min(options.max_stream_clients, std::max<size_t>(1, thread_cap / 2));
  if (stream_clients.fetch_add(1) >= max_streams) {
    stream_clients.fetch_sub(1);
    json_reply(res, 503, {{"error", "too many stream clients"}});
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  const std::string node = req.get_param_value("node");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, node, first = true](size_t, httplib::DataSink& sink) mutable {
        if (!first) {
          std::unique_lock lock(stop_mu);
          stop_cv.wait_for(lock, options.stream_interval, [this] { return stopping.load(); });
        }
        first = false;
        if (stopping.load() || !sink.is_writable()) return false;
        std::string event = "data: ";
        event += hooks.stats(node).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        event += "\n\n";
        return sink.write(event.data(), event.size());
      },
      [this](bool) { stream_clients.fetch_sub(1); });
}

std::string HttpApi::Impl::own_metrics() const {
  std::string m;
  auto line = [&m](const char* name, const char* help, uint64_t v, const char* type = "counter") {
    m += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + std::to_string(v) + "\n";
  };
  line("reqbus_http_requests_total", "HTTP requests served.", requests.load());
  line("reqbus_http_items_accepted_total", "Items published from request bodies.", items_accepted.load());
  line("reqbus_http_items_rejected_total", "Invalid items rejected from request bodies (a reply's \"rejected\" also counts the refused ones).", items_rejected.load());
  line("reqbus_http_items_refused_total", "Valid items the bus refused (queue full, timed out, closing); the sender was told which, to send them again.", items_refused.load());
  line("reqbus_http_bodies_rejected_total", "Request bodies refused with 400, 411, 413 or 501.", bodies_rejected.load());
  line("reqbus_http_unauthorized_total", "Requests refused with 401.", unauthorized.load());
  line("reqbus_http_stream_clients", "Connected live-stream clients.", stream_clients.load(), "gauge");
  line("reqbus_http_threads", "HTTP worker threads running (each open connection holds one).", pool->threads.load(), "gauge");
  line("reqbus_http_threads_busy", "HTTP worker threads serving a connection now.", pool->busy.load(), "gauge");
  line("reqbus_http_saturated_total", "Times the accept loop waited for a worker thread (all busy, no more could start: max_threads or the system's thread limit); connections queued in the listen backlog meanwhile are not counted one by one.", pool->saturated.load());
  line("reqbus_http_thread_start_failures_total", "Worker threads the system would not start (a thread or pids limit); the pool counted as full.", pool->start_failures.load());
  return m;
}

HttpApi::HttpApi(HttpApiOptions options, HttpApiHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(hooks))) {}
HttpApi::~HttpApi() { stop(); }

void HttpApi::start() {
  impl_->routes();
  const auto& o = impl_->options;
  // SO_REUSEADDR, not httplib's SO_REUSEPORT (a second node could silently take part of this
  // one's connections), and a full accept backlog instead of httplib's 5 (a burst of log
  // shippers reconnecting would wait 200 ms-1 s for SYN retransmits): see bind_server.hpp.
  impl_->port = examples::bind_server(impl_->server, o.host, o.port);
  if (impl_->port <= 0)
    throw Error(ErrorCode::transport, "http: cannot bind " + o.host + ":" + std::to_string(o.port));
  impl_->thread = std::thread([this] {
    impl_->server.listen_after_bind();  // returns once every worker thread is joined
    std::lock_guard lock(impl_->stop_mu);
    impl_->listen_done = true;
    impl_->stop_cv.notify_all();
  });
  // httplib 0.11's stop() is a no-op until the listener runs: wait for it, so that a stop()
  // right after start() cannot leave the thread blocked in accept() forever.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!impl_->server.is_running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // 0.11 has no wait_until_ready()
}

int HttpApi::port() const noexcept { return impl_->port; }

namespace {

// Shuts down this process's TCP connections accepted on `port` (the listening socket is closed
// by then). httplib 0.11 offers no way to close the connections it holds: its stop() waits for
// each worker, and a worker reading a request that a client trickles (a byte every few seconds,
// each read within the 10 s read timeout) never returned: a node with one such client ignored
// SIGTERM (helper-56). The descriptors are found in /proc/self/fd; each is duplicated first and
// the duplicate checked and shut down, so a descriptor closed and reused meanwhile is never
// touched.
void cut_connections(int port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    const std::string name = entry.path().filename();
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc() || fd < 0) continue;
    const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    int type = 0;
    socklen_t type_len = sizeof(type);
    const bool ours = ::getsockopt(dup, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 && type == SOCK_STREAM &&
                      ::getsockname(dup, reinterpret_cast<sockaddr*>(&local), &local_len) == 0 &&
                      ::getpeername(dup, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0 &&
                      ((local.ss_family == AF_INET && ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port) == port) ||
                       (local.ss_family == AF_INET6 && ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port) == port));
    if (ours) ::shutdown(dup, SHUT_RDWR);
    ::close(dup);
  }
}

}  // namespace

void HttpApi::stop() {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->stop_mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  impl_->server.stop();
  // Requests in progress get a moment to finish (idle keep-alive connections end within 1 s);
  // connections still open then (clients that send slowly, or never finish) are cut.
  std::unique_lock lock(impl_->stop_mu);
  for (auto wait = std::chrono::milliseconds(1500); !impl_->listen_done; wait = std::chrono::milliseconds(500)) {
    if (impl_->stop_cv.wait_for(lock, wait, [this] { return impl_->listen_done; })) break;
    lock.unlock();
    cut_connections(impl_->port);
    lock.lock();
  }
  lock.unlock();
  impl_->thread.join();
}

HttpApiStats HttpApi::stats() const {
  HttpApiStats s;
  s.requests = impl_->requests.load();
  s.items_accepted = impl_->items_accepted.load();
  s.items_rejected = impl_->items_rejected.load();
  s.items_refused = impl_->items_refused.load();
  s.bodies_rejected = impl_->bodies_rejected.load();
  s.unauthorized = impl_->unauthorized.load();
  s.stream_clients = impl_->stream_clients.load();
  s.threads = impl_->pool->threads.load();
  s.threads_busy = impl_->pool->busy.load();
  s.saturated = impl_->pool->saturated.load();
  return s;
}

}  // namespace reqbus::node
