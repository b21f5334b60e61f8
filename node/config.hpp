#pragma once
// Node configuration from TOML (docs/CONFIG.md lists every key). Strict: an unknown key, a
// wrong type or an out-of-range value is an error naming the key ("bus.tcp_hwm: must be an
// integer >= 0"), never silently ignored.
// Thread-safety: pure functions.
#include <string>
#include <string_view>

#include "node/node.hpp"

namespace reqbus::node {

// Applies the TOML document `text` on top of `options`. Returns "" or the error, prefixed with
// `source_name` and the line when known ("reqbus.toml:7: bus.peers: must be an array of strings").
[[nodiscard]] std::string apply_config(std::string_view text, std::string_view source_name, NodeOptions& options);

// Reads the file and applies it; "" or the error.
[[nodiscard]] std::string apply_config_file(const std::string& path, NodeOptions& options);

// "host:port" -> HttpApiOptions host/port; "" or the error naming `key`.
[[nodiscard]] std::string parse_listen(std::string_view value, std::string_view key, std::string& host, int& port);

// CURVE keys (docs/CLUSTER.md). `key_or_file` is a 40-character Z85 key, or the path of a file
// written by `reqbus keygen` (its `<which> = "..."` line, which is "secret_key" or
// "public_key") or holding only the key. "" or the error naming `key`.
[[nodiscard]] std::string read_curve_key(const std::string& key_or_file, std::string_view which, std::string_view key,
                                         std::string& out);

}  // namespace reqbus::node
