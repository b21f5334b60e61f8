#pragma once
// reqbus's one exception type, thrown for setup errors and misuse (bad options, a closed bus,
// an unreachable endpoint). The hot path (broadcast, enqueue, increment) never throws for
// back-pressure: it returns a [[nodiscard]] status instead.
#include <stdexcept>
#include <string>

namespace reqbus {

enum class ErrorCode {
  invalid_argument,  // a bad option, topic, or value; the message names the field
  closed,            // the object was closed
  transport,         // ZeroMQ refused a bind/connect or failed
  storage,           // a database or file could not be opened or written
  decode,            // bytes that are not a valid reqbus record
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace reqbus
