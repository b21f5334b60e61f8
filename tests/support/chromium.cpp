#include "tests/support/chromium.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "tests/support/spawned_process.hpp"

namespace reqbus::test {
namespace {

// A CLOEXEC copy of `fd` numbered >= 10 (above the child's targets 3 and 4); closes `fd`.
int high_fd(int fd) {
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  ::close(fd);
  if (high < 0) throw std::runtime_error(std::string("fcntl(F_DUPFD_CLOEXEC): ") + std::strerror(errno));
  return high;
}

std::string make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "reqbus-chromium-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + tmpl);
  return tmpl;
}

}  // namespace

Chromium::Chromium(ChromiumOptions options) : options_(std::move(options)) {
  options_.binary = require_executable("REQBUS_CHROMIUM", options_.binary.empty() ? "/usr/bin/chromium" : options_.binary,
                                       "Debian's chromium package");
  dir_ = make_temp_dir();
  int commands[2], replies[2];
  if (::pipe2(commands, O_CLOEXEC) != 0 || ::pipe2(replies, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  const int child_in = high_fd(commands[0]), child_out = high_fd(replies[1]);
  to_browser_ = high_fd(commands[1]);
  from_browser_ = high_fd(replies[0]);
  ::signal(SIGPIPE, SIG_IGN);  // a browser that died must be an error, not the end of the test binary

  SpawnOptions so;
  so.argv = {options_.binary,
             "--headless",
             "--no-sandbox",  // CI runs as root, where the sandbox cannot start
             "--disable-gpu",
             "--disable-dev-shm-usage",
             "--disable-background-networking",
             "--disable-component-update",
             "--disable-sync",
             "--disable-extensions",
             "--disable-default-apps",
             "--disable-quic",
             "--no-first-run",
             "--no-default-browser-check",
             "--mute-audio",
             "--hide-scrollbars",
             "--window-size=" + std::to_string(options_.window_width) + "," + std::to_string(options_.window_height),
             "--user-data-dir=" + dir_ + "/profile",
             "--remote-debugging-pipe",
             "about:blank"};
  so.output_file = dir_ + "/chromium.log";
  so.fds = {{3, child_in}, {4, child_out}};
  try {
    process_ = std::make_unique<SpawnedProcess>(so);
  } catch (...) {
    ::close(child_in);
    ::close(child_out);
    stop();
    throw;
  }
  ::close(child_in);  // the browser holds its own copies: EOF on from_browser_ now means it exited
  ::close(child_out);
  try {
    version_ = call("Browser.getVersion").value("product", "");
  } catch (...) {
    stop();
    throw;
  }
}

Chromium::~Chromium() { stop(); }

void Chromium::stop() {
  if (process_) {
    SpawnedProcess& p = *process_;
    if (!p.exited() && to_browser_ >= 0) {
      try {
        send({{"id", next_id_++}, {"method", "Browser.close"}});
      } catch (...) {
      }
      (void)p.wait(std::chrono::milliseconds(5000));
    }
    p.kill_group();  // renderers, GPU and zygote processes share its group
    process_.reset();
  }
  for (int* fd : {&to_browser_, &from_browser_})
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

std::string Chromium::output_tail(size_t bytes) const {
  return process_ ? process_->output_tail(bytes) : "";
}

void Chromium::send(const nlohmann::json& message) {
  std::string text = message.dump();
  text.push_back('\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(to_browser_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("chromium: cannot write to the DevTools pipe (" + std::string(std::strerror(errno)) +
                                         "); browser output:\n" + output_tail());
    done += size_t(n);
  }
}

bool Chromium::receive(nlohmann::json& message, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    if (const size_t end = inbox_.find('\0'); end != std::string::npos) {
      message = nlohmann::json::parse(inbox_.substr(0, end));
      inbox_.erase(0, end + 1);
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{from_browser_, POLLIN, 0};
    const int r = ::poll(&p, 1, int(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[65536];
    const ssize_t n = ::read(from_browser_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("chromium exited (DevTools pipe closed); browser output:\n" + output_tail());
    inbox_.append(buf, size_t(n));
  }
}

nlohmann::json Chromium::call(const std::string& method, const nlohmann::json& params, const std::string& session,
                              std::chrono::milliseconds timeout) {
  const int id = next_id_++;
  nlohmann::json m = {{"id", id}, {"method", method}, {"params", params}};
  if (!session.empty()) m["sessionId"] = session;
  send(m);
  const auto deadline = std::chrono::steady_clock::now() + (timeout.count() > 0 ? timeout : options_.command_timeout);
  nlohmann::json reply;
  while (receive(reply, deadline)) {
    if (!reply.contains("id")) {
      events_.push_back(std::move(reply));
      continue;
    }
    if (reply["id"] != id) continue;  // a reply to a command whose caller already gave up
    if (reply.contains("error"))
      throw std::runtime_error("chromium: " + method + " failed: " + reply["error"].dump());
    return reply.value("result", nlohmann::json::object());
  }
  throw std::runtime_error("chromium: no reply to " + method + " within the deadline; browser output:\n" + output_tail());
}

Page::Page(Chromium& browser) : browser_(browser) {
  target_ = browser_.call("Target.createTarget", {{"url", "about:blank"}})["targetId"].get<std::string>();
  session_ = browser_.call("Target.attachToTarget", {{"targetId", target_}, {"flatten", true}})["sessionId"].get<std::string>();
  browser_.call("Page.enable", nlohmann::json::object(), session_);
  browser_.call("Runtime.enable", nlohmann::json::object(), session_);
  browser_.call("Emulation.setDeviceMetricsOverride",
                {{"width", browser_.options().window_width},
                 {"height", browser_.options().window_height},
                 {"deviceScaleFactor", 1},
                 {"mobile", false}},
                session_);
}

Page::~Page() {
  try {
    browser_.call("Target.closeTarget", {{"targetId", target_}}, "", std::chrono::milliseconds(5000));
  } catch (...) {  // the browser is stopped by its own destructor either way
  }
}

void Page::add_init_script(const std::string& source) {
  browser_.call("Page.addScriptToEvaluateOnNewDocument", {{"source", source}}, session_);
}

void Page::navigate(const std::string& url) {
  const size_t seen = browser_.events().size();
  const auto r = browser_.call("Page.navigate", {{"url", url}}, session_);
  if (r.contains("errorText") && !r["errorText"].get<std::string>().empty())
    throw std::runtime_error("chromium: navigating to " + url + " failed: " + r["errorText"].get<std::string>());
  // The load event may already be among the events read while waiting for the reply.
  auto loaded = [&] {
    for (size_t i = seen; i < browser_.events().size(); ++i) {
      const auto& e = browser_.events()[i];
      if (e.value("method", "") == "Page.loadEventFired" && e.value("sessionId", "") == session_) return true;
    }
    return false;
  };
  if (!loaded() && !wait_for("document.readyState === 'complete'", std::chrono::milliseconds(20000)))
    throw std::runtime_error("chromium: " + url + " did not finish loading within 20 s");
}

nlohmann::json Page::evaluate(const std::string& expression, bool await_promise) {
  const auto r = browser_.call("Runtime.evaluate",
                               {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", await_promise}},
                               session_);
  if (r.contains("exceptionDetails"))
    throw std::runtime_error("chromium: `" + expression + "` threw: " + r["exceptionDetails"].dump());
  return r["result"].value("value", nlohmann::json());
}

bool Page::wait_for(const std::string& condition, std::chrono::milliseconds timeout) {
  // Checked on every animation frame and timer tick inside the page, which resolves the promise
  // the moment the condition holds (SSE renders happen between frames).
  const std::string script = "new Promise((resolve) => {"
                             "  const until = performance.now() + " + std::to_string(timeout.count()) + ";"
                             "  const check = () => {"
                             "    let ok = false; try { ok = !!(" + condition + "); } catch (e) {}"
                             "    if (ok) return resolve(true);"
                             "    if (performance.now() > until) return resolve(false);"
                             "    setTimeout(check, 20);"
                             "  };"
                             "  check();"
                             "})";
  const auto r = browser_.call("Runtime.evaluate", {{"expression", script}, {"returnByValue", true}, {"awaitPromise", true}},
                               session_, timeout + std::chrono::milliseconds(10000));
  if (r.contains("exceptionDetails")) throw std::runtime_error("chromium: wait_for threw: " + r["exceptionDetails"].dump());
  return r["result"].value("value", false);
}

std::string Page::html() { return evaluate("document.documentElement.outerHTML").get<std::string>(); }

std::string Page::screenshot_png() {
  const auto r = browser_.call("Page.captureScreenshot", {{"format", "png"}}, session_);
  // base64 decode
  const std::string in = r["data"].get<std::string>();
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t value = 0;
  int bits = -8;
  for (const unsigned char c : in) {
    int d;
    if (c >= 'A' && c <= 'Z') d = c - 'A';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
    else if (c >= '0' && c <= '9') d = c - '0' + 52;
    else if (c == '+') d = 62;
    else if (c == '/') d = 63;
    else break;  // '=' padding
    value = ((value & 0xFFFF) << 6) | uint32_t(d);
    bits += 6;
    if (bits >= 0) {
      out.push_back(char((value >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::vector<nlohmann::json> Page::events(const std::string& method) const {
  std::vector<nlohmann::json> out;
  for (const auto& e : browser_.events())
    if (e.value("method", "") == method && e.value("sessionId", "") == session_) out.push_back(e);
  return out;
}

bool png_size(const std::string& png, int& width, int& height) {
  static const std::string signature("\x89PNG\r\n\x1a\n", 8);
  if (png.size() < 24 || png.compare(0, 8, signature) != 0 || png.compare(12, 4, "IHDR") != 0) return false;
  auto be32 = [&](size_t at) {
    return int((uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
               (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3])));
  };
  width = be32(16);
  height = be32(20);
  return true;
}

}  // namespace reqbus::test
