#include "reqbus/client_ip.hpp"

#include <algorithm>

namespace reqbus {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// An address is hex digits, dots and colons (IPv4, IPv6); anything else is not believed.
bool looks_like_ip(std::string_view s) {
  if (s.empty() || s.size() > 45) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':';
  });
}

bool trusted(std::string_view ip, const std::vector<std::string>& proxies) {
  return std::find(proxies.begin(), proxies.end(), ip) != proxies.end();
}

}  // namespace

std::string client_ip(std::string_view peer, std::string_view forwarded_for,
                      const std::vector<std::string>& trusted_proxies) {
  if (forwarded_for.empty() || !trusted(peer, trusted_proxies)) return std::string(peer);
  // Walk the chain right to left: each hop was added by the proxy in front of us.
  std::string_view rest = forwarded_for;
  while (!rest.empty()) {
    const size_t comma = rest.rfind(',');
    const std::string_view hop = trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(0, comma);
    if (!looks_like_ip(hop)) return std::string(peer);  // a forged or garbled hop: stop believing
    if (!trusted(hop, trusted_proxies)) return std::string(hop);
  }
  return std::string(peer);
}

}  // namespace reqbus
