#include "node/visitor_hash.hpp"

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

namespace reqbus::node {

VisitorId VisitorHasher::id(std::string_view ip, std::string_view user_agent, int64_t unix_day) {
  std::array<unsigned char, 32> salt;
  {
    std::lock_guard lock(mu_);
    auto it = salts_.find(unix_day);
    if (it == salts_.end()) {
      std::array<unsigned char, 32> fresh;
      if (RAND_bytes(fresh.data(), int(fresh.size())) != 1) throw std::runtime_error("RAND_bytes failed");
      it = salts_.emplace(unix_day, fresh).first;
      while (salts_.size() > kDaysKept) salts_.erase(salts_.begin());  // forget the oldest day
      it = salts_.find(unix_day);
      if (it == salts_.end()) return VisitorId{};  // older than every day kept: not counted
    }
    salt = it->second;
  }
  std::string message;
  message.reserve(ip.size() + 1 + user_agent.size());
  message.append(ip).push_back('\0');
  message.append(user_agent);
  unsigned char digest[32];
  unsigned int len = sizeof(digest);
  HMAC(EVP_sha256(), salt.data(), int(salt.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &len);
  VisitorId v;
  std::memcpy(&v.hi, digest, 8);
  std::memcpy(&v.lo, digest + 8, 8);
  return v;
}

}  // namespace reqbus::node
