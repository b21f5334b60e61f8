#pragma once
// The dashboard's files (web/), compiled into the binary by cmake/EmbedAssets.cmake.
// Thread-safety: immutable after first use.
#include <cstddef>
#include <string_view>
#include <vector>

namespace reqbus::node {

struct Asset {
  std::string_view name;          // "index.html", "dashboard.js", ...
  std::string_view content_type;
  const char* data;
  size_t size;
};

const std::vector<Asset>& embedded_assets();
const Asset* find_asset(std::string_view name);

}  // namespace reqbus::node
