#include "node/prometheus.hpp"

#include <cmath>
#include <cstdio>

namespace reqbus::node {
namespace {

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15)
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  else
    std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Label values escape backslash, double quote and newline.
void escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\'), out.push_back(c);
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
}

}  // namespace

void PromWriter::header(std::string_view name, std::string_view help, std::string_view type) {
  out_.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ");
  out_.append(name).append(" ").append(type).append("\n");
}

void PromWriter::sample(std::string_view name, std::string_view label, std::string_view value, double v) {
  out_.append(name).append("{").append(label).append("=\"");
  escaped(out_, value);
  out_.append("\"} ").append(number(v)).append("\n");
}

void PromWriter::counter(std::string_view name, std::string_view help, double value) {
  header(name, help, "counter");
  out_.append(name).append(" ").append(number(value)).append("\n");
}

void PromWriter::gauge(std::string_view name, std::string_view help, double value) {
  header(name, help, "gauge");
  out_.append(name).append(" ").append(number(value)).append("\n");
}

}  // namespace reqbus::node
