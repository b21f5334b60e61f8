#include "app/node_flags.hpp"

#include <algorithm>

#include "node/config.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {

void NodeFlags::add_to(CLI::App& app, bool with_config) {
  if (with_config) app.add_option("-c,--config", config, "TOML configuration file (docs/CONFIG.md)")->check(CLI::ExistingFile);
  app.add_option("--node-id", node_id, "This node's id (default: <hostname>-<pid>)");
  app.add_option("--store", store, "sqlite:PATH, postgres:CONNINFO or none");
  app.add_option("--bind", bind, "tcp endpoint serving peers, e.g. tcp://0.0.0.0:7400");
  app.add_option("--peer", peers, "tcp endpoint of a peer node (repeatable)");
  app.add_option("--curve-secret", curve_secret, "This node's CURVE secret key, or a `reqbus keygen --out` file");
  app.add_option("--allow", allow, "Public key (or key file) of a client allowed to connect to --bind (repeatable)");
  app.add_option("--publish-to", publish_to, "Forwarder frontend to publish to, tcp://HOST:PORT#serverkey (repeatable)");
  app.add_option("--peer-state-file", peer_state_file, "Keep peers' last sequence here to count what a restart missed");
  app.add_flag("--insecure", insecure, "Plain tcp between nodes: no authentication, no encryption");
  app.add_option("--http", http, "HTTP API and dashboard address HOST:PORT (default 127.0.0.1:7480; port 0 = any)");
  app.add_option("--token", token, "Bearer token required by the HTTP API");
  app.add_option("--syslog", syslog, "UDP HOST:PORT for nginx `access_log syslog:server=...`");
  app.add_option("--spool-dir", spool_dir, "Directory of the on-disk spool (default reqbus-spool; \"\" = none: what the store cannot take is dropped)");
}

void NodeFlags::apply(node::NodeOptions& o) const {
  if (!config.empty())
    if (auto e = node::apply_config_file(config, o); !e.empty()) throw Error(ErrorCode::invalid_argument, e);
  // The Bus checks node_id, bind, peers... itself; serve reports them with in_user_terms().
  if (node_id) o.bus.node_id = *node_id;
  if (store) o.store = *store;
  if (bind) o.bus.bind = *bind;
  if (!peers.empty()) o.bus.peers = peers;
  if (!publish_to.empty()) o.bus.publish_to = publish_to;
  if (peer_state_file) o.bus.peer_state_file = *peer_state_file;
  if (curve_secret)
    if (auto e = node::read_curve_key(*curve_secret, "secret_key", "--curve-secret", o.bus.curve_secret_key); !e.empty())
      throw Error(ErrorCode::invalid_argument, e);
  if (!allow.empty()) {
    o.bus.curve_allowed_clients.clear();
    for (const auto& a : allow) {
      std::string key;
      if (auto e = node::read_curve_key(a, "public_key", "--allow", key); !e.empty()) throw Error(ErrorCode::invalid_argument, e);
      o.bus.curve_allowed_clients.push_back(key);
    }
  }
  if (insecure) o.bus.insecure_plaintext = true;
  if (http)
    if (auto e = node::parse_listen(*http, "--http", o.http.host, o.http.port); !e.empty())
      throw Error(ErrorCode::invalid_argument, e);
  if (token) o.http.bearer_token = *token;
  if (syslog) o.syslog_listen = *syslog;
  if (spool_dir) o.spool_dir = *spool_dir;
}

const UserTerms& serve_terms() {
  static const UserTerms terms{
      {
          {"BusOptions.node_id", "--node-id (node_id)"},
          {"BusOptions.bind", "--bind (bus.bind)"},
          {"BusOptions.peers", "--peer (bus.peers)"},
          {"BusOptions.publish_to", "--publish-to (bus.publish_to)"},
          {"BusOptions.peer_state_file", "--peer-state-file (bus.peer_state_file)"},
          {"BusOptions.curve_secret_key", "--curve-secret ([security] secret_key)"},
          {"BusOptions.curve_public_key", "--curve-secret ([security] secret_key)"},
          {"BusOptions.curve_allowed_clients", "--allow ([security] allowed_clients)"},
          {"BusOptions.insecure_plaintext", "--insecure ([security] insecure_plaintext)"},
          {"BusOptions.max_frame_bytes", "bus.max_message_bytes"},
          // The store string's postgres: part; an empty one is "required".
          {"PostgresSinkOptions.conninfo", "--store (store) postgres:CONNINFO"},
      },
      {},
      "bus.",
  };
  return terms;
}

const UserTerms& tail_terms() {
  static const UserTerms terms{
      {
          {"BusOptions.peers", "--peer"},
          {"BusOptions.curve_secret_key", "--curve-secret"},
          {"BusOptions.curve_public_key", "--curve-secret"},
          {"BusOptions.insecure_plaintext", "--insecure"},
      },
      {
          {"insecure_plaintext = true", "--insecure"},
          {"curve_secret_key", "--curve-secret"},
      },
      "",
  };
  return terms;
}

std::string in_user_terms(const std::string& message, const UserTerms& terms) {
  const size_t colon = message.find(':');
  if (colon == std::string::npos) return message;
  const std::string_view field(message.data(), colon);
  std::string name;
  for (const auto& [f, n] : terms.fields)
    if (field == f) name = n;
  static constexpr std::string_view kBus = "BusOptions.";
  if (name.empty() && !terms.other_bus_fields.empty() && field.substr(0, kBus.size()) == kBus)
    name = std::string(terms.other_bus_fields) + std::string(field.substr(kBus.size()));
  if (name.empty()) return message;  // not a field this subcommand names
  std::string reason = message.substr(colon);
  for (const auto& [from, to] : terms.phrases)
    for (size_t at = reason.find(from); at != std::string::npos; at = reason.find(from, at + to.size()))
      reason.replace(at, from.size(), to);
  return name + reason;
}

bool close_waits_for_writes(const node::NodeOptions& o) { return o.spool_dir.empty() && o.store != "none"; }

std::string hurry_text(const node::NodeOptions& o) {
  if (o.store == "none") return "no store to wait for";
  if (close_waits_for_writes(o)) return "events not yet stored are dropped (counted; no spool), writes in progress abandoned";
  return "events not yet stored go to the spool (" + o.spool_dir + "), writes in progress are abandoned";
}

std::string forced_exit_text(const node::NodeOptions& o) {
  if (o.store == "none") return "events not yet delivered to subscribers are lost; no summary is printed";
  if (o.spool_dir.empty()) return "events not yet stored are lost (no spool); no summary is printed";
  return "events not yet stored or spooled are lost; the spool (" + o.spool_dir +
         ") keeps what it has for the next start; no summary is printed";
}

// Events the node lost: the bus's and the Batcher's drops, less what only the live view skipped.
// (What the bus refused to HTTP senders is no drop: they were told to send it again.)
uint64_t dropped_for_good(const node::NodeReport& r) {
  const uint64_t all = r.bus.dropped_newest + r.bus.dropped_oldest + r.bus.dropped_timeout + r.bus.dropped_close_deadline +
                       r.batcher.dropped.total();
  return all - std::min(all, r.view_dropped);
}

std::string describe(const node::NodeReport& r) {
  auto n = [](uint64_t v) { return std::to_string(v); };
  std::string s = "published " + n(r.bus.published) + ", delivered to subscribers " + n(r.bus.delivered) +
                  ", persisted " + n(r.batcher.delivered) + ", spooled " + n(r.batcher.spooled) +
                  ", replayed from the spool " + n(r.replayed) +
                  ", dropped " + n(dropped_for_good(r)) +
                  ", gaps " + n(r.bus.gaps) + ", counter windows " + n(r.counter_windows) + " (" +
                  n(r.counters.flushed) + " at close)";
  if (r.counters.failed) {
    s += ", counter windows lost " + n(r.counters.failed) + " (count " +
         std::to_string(r.counters.left_count) + ")";
  }
  if (r.dead_lettered)  // kept, but out of the store until an operator acts (docs/RELIABILITY.md)
    s += ", rejected by the store for good (in the spool's dead-letter file) " + n(r.dead_lettered);
  if (r.spool_left_bytes)
    s += ", left in the spool for the next start " + n(r.spool_left_bytes) + " bytes";
  if (r.store_duplicates)  // written, and found stored already (a resend, a replay, a log ingested twice)
    s += ", already in the store (kept once) " + n(r.store_duplicates);
  if (r.bus.in_hand) s += ", still in a stuck handler " + n(r.bus.in_hand);
  if (r.view_dropped)  // the dashboard's numbers fell behind; the store has them
    s += ", skipped by the live view to keep up (stored all the same) " + n(r.view_dropped);
  if (r.http_refused)  // the bus was full: the senders were told which to send again
    s += ", refused to HTTP senders (told to send again) " + n(r.http_refused);
  if (r.uplink_unsent)  // stored here; missing from the other nodes' views
    s += ", not sent to a publish_to endpoint (it was down) " + n(r.uplink_unsent);
  if (r.batcher.delivered_after_deadline)  // counted above as spooled or dropped, and stored too
    s += ", stored after the deadline gave them up " + n(r.batcher.delivered_after_deadline);
  if (r.deadline_reached) s += " (deadline reached: see the counts above)";
  return s;
}

}  // namespace reqbus::app
