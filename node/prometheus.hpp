#pragma once
// Writes the Prometheus text exposition format (version 0.0.4).
// Thread-safety: a value type; use one per scrape.
#include <cstdint>
#include <string>
#include <string_view>

namespace reqbus::node {

class PromWriter {
 public:
  // A metric without labels.
  void counter(std::string_view name, std::string_view help, double value);
  void gauge(std::string_view name, std::string_view help, double value);
  // A metric family with one label; call header() once, then sample() per label value.
  void header(std::string_view name, std::string_view help, std::string_view type);
  void sample(std::string_view name, std::string_view label, std::string_view label_value, double value);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

}  // namespace reqbus::node
