#include "node/assets.hpp"

namespace reqbus::node {

const Asset* find_asset(std::string_view name) {
  for (const Asset& a : embedded_assets())
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace reqbus::node
