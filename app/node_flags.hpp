#pragma once
// The flags of `serve` that configure a node; applied over the TOML config. And the names the
// subcommands that build a Bus from flags (serve, tail) give the library's option fields in errors.
// Thread-safety: NodeFlags is used from the thread that parses; the rest are pure functions over
// constant tables, callable from any thread.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "node/node.hpp"

namespace reqbus::app {

struct NodeFlags {
  std::string config;
  std::optional<std::string> node_id, store, bind, http, token, syslog, spool_dir;
  std::vector<std::string> peers;
  // docs/CLUSTER.md: CURVE keys (a key or a `reqbus keygen --out` file), allow-list, plaintext.
  std::optional<std::string> curve_secret, peer_state_file;
  std::vector<std::string> allow, publish_to;
  bool insecure = false;

  void add_to(CLI::App& app, bool with_config);
  // Loads the config file (if any) then applies the flags; throws Error naming the problem.
  void apply(node::NodeOptions& options) const;
};

// The close summary: counter windows over the node's life, and of those the ones close() wrote.
std::string describe(const node::NodeReport& report);

// A graceful shutdown cut short (ShutdownSignals), said for this node's store and spool: what
// hurrying it does (Node::hurry), and what exiting at once gives up.
std::string hurry_text(const node::NodeOptions& options);
std::string forced_exit_text(const node::NodeOptions& options);
// Without a spool a store write in progress is its batch's only chance: close waits for it,
// past the deadline.
bool close_waits_for_writes(const node::NodeOptions& options);

// How one subcommand names the fields of the library's option structs in its flags (and keys).
// A library error names the C++ field ("BusOptions.peers: ..."); a user knows the flag.
struct UserTerms {
  using Names = std::vector<std::pair<std::string_view, std::string_view>>;
  Names fields;   // "BusOptions.peers" -> "--peer (bus.peers)": the name before the ':'
  Names phrases;  // rewritten in the reason after it ("insecure_plaintext = true" -> "--insecure")
  // A BusOptions field not in `fields` is named "<this><field>" ("bus." gives serve's [bus] key);
  // "" keeps such a message as it is (a subcommand without a config file has no other name).
  std::string_view other_bus_fields;
};
const UserTerms& serve_terms();  // `serve`: flags, with the config key in parentheses
const UserTerms& tail_terms();   // `tail`: its flags only

// "BusOptions.curve_allowed_clients: empty, ..." → "--allow ([security] allowed_clients): empty, ...":
// an error of the library, in the names a subcommand (by default `serve` and its config file)
// uses. Other text is kept. Pure function; any thread.
std::string in_user_terms(const std::string& message, const UserTerms& terms = serve_terms());

}  // namespace reqbus::app
