#pragma once
// Flags: the examples' minimal command-line parsing. "--name value" or "--name=value";
// "--help" prints the usage. A bad or unknown flag prints one line naming it and exits 2.
// Thread-safety: none needed; used from main() only.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace reqbus::examples {

class Flags {
 public:
  Flags(int argc, char** argv, std::string usage) : program_(argv[0]), usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::printf("usage: %s %s\n", program_.c_str(), usage_.c_str());
        std::exit(0);
      }
      if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "'");
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        values_.emplace(arg.substr(2, eq - 2), arg.substr(eq + 1));
      } else if (i + 1 < argc) {
        values_.emplace(arg.substr(2), argv[++i]);
      } else {
        fail(arg + " needs a value");
      }
    }
  }

  std::string str(const std::string& name, const std::string& fallback = "") {
    const auto v = all(name);
    return v.empty() ? fallback : v.back();
  }

  std::vector<std::string> all(const std::string& name) {
    used_.insert(name);
    std::vector<std::string> out;
    for (auto [it, end] = values_.equal_range(name); it != end; ++it) out.push_back(it->second);
    return out;
  }

  long num(const std::string& name, long fallback, long min, long max) {
    const auto values = all(name);
    if (values.empty()) return fallback;
    const std::string& text = values.back();
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < min || v > max)
      fail("--" + name + ": '" + text + "' is not a number in " + std::to_string(min) + ".." +
           std::to_string(max));
    return v;
  }

  // Call after reading every flag: rejects the ones nobody asked for.
  void done() const {
    for (const auto& [name, value] : values_)
      if (!used_.count(name)) fail("unknown flag --" + name);
  }

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s (try --help)\n", program_.c_str(), why.c_str());
    std::exit(2);
  }

 private:
  std::string program_, usage_;
  std::multimap<std::string, std::string> values_;
  std::set<std::string> used_;
};

}  // namespace reqbus::examples
