#pragma once
// The client's address behind reverse proxies. X-Forwarded-For is believed only when the
// connection comes from a trusted proxy, and then only as far back as the chain of trusted
// proxies goes: the first untrusted address from the right is the client. Anything else lets
// any client forge its address (and its visitor id). Thread-safety: pure function.
#include <string>
#include <string_view>
#include <vector>

namespace reqbus {

// `peer`: the TCP peer address; `forwarded_for`: the X-Forwarded-For header ("" if absent);
// `trusted_proxies`: exact addresses (IPv4 or IPv6 text) of proxies whose header is believed.
std::string client_ip(std::string_view peer, std::string_view forwarded_for,
                      const std::vector<std::string>& trusted_proxies);

}  // namespace reqbus
