#pragma once
// `reqbus ingest`'s side of the node's HTTP API: its flags, its counts, and the Sender, which
// batches parsed lines as NDJSON, POSTs them to /v1/requests and posts again the lines the
// node's bus refused (app/cmd_ingest.cpp reads the input).
// Thread-safety: one Sender per ingest run, used from one thread.
#include <httplib.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/log.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus::app::ingest_cmd {

struct IngestFlags {
  std::string input = "-";
  std::string node_addr = "127.0.0.1:7480";
  std::string token;
  std::string format = "auto";
  bool follow = false;
  size_t batch = 2000;
  int retries = 5;  // of a failed HTTP request, and of posting lines the node's bus refused
  bool dry_run = false;  // parse and count only: the Sender makes no HTTP client and posts nothing
};

struct Counts {
  uint64_t lines = 0, parsed = 0, parse_errors = 0, accepted = 0, bytes = 0;
  uint64_t invalid = 0;     // lines the node rejected as invalid (never posted again)
  uint64_t refused = 0;     // lines the node's bus refused at every try: not stored
  uint64_t resent = 0;      // lines posted again after a refusal of the bus
  std::string refusal;      // the last refusal, e.g. "bus: dropped_newest"
  uint64_t unfinished = 0;  // partial last lines left unpublished when a signal stopped us
  uint64_t unfinished_bytes = 0;
};

class Sender {
 public:
  Sender(const IngestFlags& f, Counts& counts);
  // Adds one line to the batch; posts the batch once it holds --batch lines.
  void add(const RequestLog& r);
  // Posts what the batch holds (nothing if it is empty).
  void send();
  // SIGINT or SIGTERM taken while waiting to post again (0: none). From then on nothing is
  // retried: lines still refused count as refused, and a node that cannot be reached ends the
  // run at once instead of after --retries growing pauses (100 of them: ~17 minutes).
  int stopped_by() const { return signal_; }

 private:
  // Sleeps `d` unless SIGINT/SIGTERM arrives (main() blocks them, so a plain sleep never ends
  // early); false when it did, or did before.
  bool pause(std::chrono::milliseconds d);
  void publish();
  std::string_view line(size_t i) const;
  std::vector<size_t> settle(const nlohmann::json& reply, const std::vector<size_t>& lines);
  nlohmann::json post(const std::string& body);

  const IngestFlags& f_;
  Counts& counts_;
  std::unique_ptr<httplib::Client> http_;
  std::string body_;
  std::vector<size_t> line_ends_;  // where each line of body_ ends (past its '\n')
  RateLimiter limit_;
  int signal_ = 0;
};

}  // namespace reqbus::app::ingest_cmd
