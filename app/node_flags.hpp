#pragma once
// The flags of `serve` that configure a node; applied over the TOML config.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
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

std::string describe(const node::NodeReport& report);

// "BusOptions.curve_allowed_clients: empty, ..." → "--allow ([security] allowed_clients): empty, ...":
// an error of the library, in the names `serve` and its config file use. Other text is kept.
std::string in_user_terms(const std::string& message);

}  // namespace reqbus::app
