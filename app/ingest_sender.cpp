#include "app/ingest_sender.hpp"

#include <algorithm>
#include <csignal>
#include <chrono>
#include <numeric>

#include "analytics/request_json.hpp"
#include "app/commands.hpp"
#include "node/config.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {
std::string http_error_text(httplib::Error e);  // cmd_top.cpp
}  // namespace reqbus::app

namespace reqbus::app::ingest_cmd {
namespace {

// Posting lines the bus refused again waits 200 ms, 400 ms, 800 ms, ... up to this.
constexpr auto kMaxResendBackoff = std::chrono::milliseconds(2000);

std::chrono::milliseconds resend_backoff(int resend) {
  return resend >= 4 ? kMaxResendBackoff
                     : std::min<std::chrono::milliseconds>(std::chrono::milliseconds(200 << resend), kMaxResendBackoff);
}

}  // namespace

Sender::Sender(const IngestFlags& f, Counts& counts) : f_(f), counts_(counts) {
  std::string host;
  int port = 0;
  if (auto e = node::parse_listen(f.node_addr, "--node-addr", host, port); !e.empty())
    throw Error(ErrorCode::invalid_argument, e);
  if (f.dry_run) return;  // nothing is posted: no client, so no connection to the node, ever
  http_ = std::make_unique<httplib::Client>(host, port);
  http_->set_keep_alive(true);
  http_->set_tcp_nodelay(true);
  http_->set_connection_timeout(5, 0);
  http_->set_read_timeout(30, 0);
  if (!f.token.empty()) http_->set_bearer_token_auth(f.token.c_str());
}

void Sender::add(const RequestLog& r) {
  json::append_ndjson(body_, r);
  body_.push_back('\n');
  line_ends_.push_back(body_.size());
  if (line_ends_.size() >= f_.batch) send();
}

void Sender::send() {
  if (line_ends_.empty()) return;
  if (!f_.dry_run) publish();  // a dry run's lines are counted as parsed, and no node accepted them
  body_.clear();
  line_ends_.clear();
}

// Posts the batch, then just the lines the node's bus refused, again and again with a growing
// pause, --retries times at most. Ids are deterministic: a line that reaches the bus twice is
// stored once.
void Sender::publish() {
  std::vector<size_t> lines(line_ends_.size());  // indices into the batch
  std::iota(lines.begin(), lines.end(), size_t(0));
  std::string body;
  for (int resend = 0;; ++resend) {
    std::vector<size_t> refused = settle(post(resend == 0 ? body_ : body), lines);
    if (refused.empty()) return;
    if (resend == f_.retries) {
      counts_.refused += refused.size();
      return;
    }
    if (!pause(resend_backoff(resend))) {
      counts_.refused += refused.size();
      return;
    }
    counts_.resent += refused.size();
    lines = std::move(refused);
    body.clear();
    for (size_t i : lines) body.append(line(i));
  }
}

bool Sender::pause(std::chrono::milliseconds d) {
  if (!signal_) signal_ = wait_for_signal(d);
  return signal_ == 0;
}

// Line i of the batch, with its '\n'.
std::string_view Sender::line(size_t i) const {
  const size_t begin = i == 0 ? 0 : line_ends_[i - 1];
  return std::string_view(body_).substr(begin, line_ends_[i] - begin);
}

// Counts what the node made of `lines` (posted in this order) and returns the ones to post
// again: those its bus refused ("bus: timed_out", "bus: dropped_newest", "bus: closed"), which
// a later try can get in. Lines it found invalid will not get better: counted and logged.
// The node names every refused line in "refused". A node from before that field lists only the
// first item errors (50): when it refused more, which of the lines after the last one listed
// got in is unknown, so all of them are posted again and count as accepted only then.
std::vector<size_t> Sender::settle(const nlohmann::json& reply, const std::vector<size_t>& lines) {
  uint64_t accepted = reply.value("accepted", uint64_t(0));
  const uint64_t rejected = reply.value("rejected", uint64_t(0));
  const auto refused = reply.find("refused");
  const bool exact = refused != reply.end() && refused->is_array();
  std::vector<size_t> again;
  uint64_t listed = 0, invalid_listed = 0;
  size_t known = 0;  // what became of lines [0, known) is known
  for (const auto& e : reply.value("errors", nlohmann::json::array())) {
    if (!e.is_object()) continue;
    const size_t index = e.value("index", lines.size());
    if (index >= lines.size()) continue;
    ++listed;
    known = index + 1;
    const std::string why = e.value("error", std::string("?"));
    if (why.rfind("bus:", 0) == 0) {
      if (!exact) again.push_back(lines[index]);
      counts_.refusal = why;
    } else {
      ++invalid_listed;
      limit_.log(LogLevel::warn, "ingest: the node rejected a line: " + why);
    }
  }
  if (exact) {
    for (const auto& r : *refused) {
      const size_t index = r.is_number_unsigned() ? r.get<size_t>() : lines.size();
      if (index < lines.size()) again.push_back(lines[index]);
    }
    if (!again.empty() && counts_.refusal.empty()) counts_.refusal = "bus: refused";
    counts_.invalid += rejected - std::min<uint64_t>(rejected, again.size());  // the rest were invalid
  } else {
    counts_.invalid += invalid_listed;
    if (rejected > listed) {
      const uint64_t unknown = lines.size() - known, refused_among = std::min<uint64_t>(unknown, rejected - listed);
      accepted -= std::min(accepted, unknown - refused_among);
      for (size_t i = known; i < lines.size(); ++i) again.push_back(lines[i]);
    }
  }
  counts_.accepted += accepted;
  return again;
}

// POSTs `body` and returns the node's answer with its counts (202, or 503 naming the lines its
// bus refused). A failure a later try can fix (no answer, 429, another 5xx) is tried again
// --retries times; then, or at once for other 4xx, throws.
nlohmann::json Sender::post(const std::string& body) {
  std::string why;
  for (int attempt = 0; attempt <= f_.retries; ++attempt) {
    if (attempt && !pause(std::chrono::milliseconds(200 * attempt))) {  // backoff
      why += std::string(" (stopped by ") + (signal_ == SIGINT ? "SIGINT" : "SIGTERM") + " while retrying)";
      break;
    }
    auto res = http_->Post("/v1/requests", body, "application/x-ndjson");
    if (!res) {
      why = "cannot reach http://" + f_.node_addr + " (" + http_error_text(res.error()) + ")";
      continue;
    }
    if (res->status == 202) {
      auto j = nlohmann::json::parse(res->body, nullptr, false);
      if (j.is_object()) return j;
      throw Error(ErrorCode::transport, "ingest: the node answered 202 without its counts: " + res->body.substr(0, 200));
    }
    // A node whose bus refused some lines answers 503 naming them; the others are in. (settle()
    // sends just those again.) A 503 without that list is a node that is down: tried again.
    if (res->status == 503) {
      auto j = nlohmann::json::parse(res->body, nullptr, false);
      if (j.is_object() && j.contains("refused") && j["refused"].is_array() && !j["refused"].empty()) return j;
    }
    why = "the node answered " + std::to_string(res->status) + ": " + res->body.substr(0, 200);
    if (res->status >= 400 && res->status < 500 && res->status != 429) break;  // will not get better
  }
  throw Error(ErrorCode::transport, "ingest: " + why);
}

}  // namespace reqbus::app::ingest_cmd
