// Fuzzes the node's TOML configuration (node::apply_config) on arbitrary text.
// Invariants: it returns (never throws, never crashes); an error names the source
// ("fuzz.toml..."); applying an accepted text a second time, on the options it produced, is
// accepted too (the result is a fixed point: nothing depends on the defaults it overwrote).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.hpp"
#include "node/config.hpp"

namespace reqbus::fuzz::config {

inline void run(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  node::NodeOptions options;
  const std::string error = node::apply_config(text, "fuzz.toml", options);
  if (!error.empty()) {
    REQBUS_FUZZ_CHECK(error.rfind("fuzz.toml", 0) == 0, "error does not name the source: " + error);
    return;
  }
  const std::string again = node::apply_config(text, "fuzz.toml", options);
  REQBUS_FUZZ_CHECK(again.empty(), "accepted config refused when applied twice: " + again);
}

}  // namespace reqbus::fuzz::config

REQBUS_FUZZ_ENTRY(reqbus::fuzz::config::run)
