#pragma once
// Chromium: a real headless Chromium (Debian's `chromium`) for tests, driven over the DevTools
// protocol through `--remote-debugging-pipe`: the browser reads commands on its fd 3 and writes
// replies and events on its fd 4, one JSON message per NUL-terminated chunk — so no WebSocket
// client is needed. Each object owns one browser process (its own process group) with a fresh
// profile directory, runs as root (`--no-sandbox`) with background networking, component
// updates and sync off (the network is closed here), and kills the whole group in its
// destructor, also when the test failed.
// Page: one tab of that browser, attached as a flattened DevTools session.
// Thread-safety: a Chromium and its Pages are used from one thread.
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace reqbus::test {

class SpawnedProcess;

struct ChromiumOptions {
  // The browser. Default: $REQBUS_CHROMIUM when set, else Debian's /usr/bin/chromium
  // (scripts/setup.sh installs it). A missing binary is an error, never a skipped test.
  std::string binary;
  // Viewport of new tabs, CSS pixels (screenshots have this size). Default 1280 x 900.
  int window_width = 1280;
  int window_height = 900;
  // How long one DevTools command may take. Default 30 s (a cold start on a busy 2-core
  // machine takes a few seconds; sanitizer builds of the test do not slow the browser).
  std::chrono::milliseconds command_timeout{30000};
};

class Chromium {
 public:
  // Starts the browser and checks it answers Browser.getVersion. Throws std::runtime_error
  // naming the binary (and setup.sh) when it is missing, or with the browser's output when it
  // does not start.
  explicit Chromium(ChromiumOptions options = {});
  ~Chromium();  // Browser.close, then SIGKILL to the process group if it has not exited
  Chromium(const Chromium&) = delete;
  Chromium& operator=(const Chromium&) = delete;

  // Sends one command (to `session`, or to the browser when empty) and returns its "result".
  // Events that arrive meanwhile are kept (events()). Throws std::runtime_error on an error
  // reply, on timeout and when the browser exits, with the tail of the browser's output.
  nlohmann::json call(const std::string& method, const nlohmann::json& params = nlohmann::json::object(),
                      const std::string& session = "",
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // Every event received so far, in order: {"method", "params", "sessionId"?}.
  const std::vector<nlohmann::json>& events() const noexcept { return events_; }
  std::string version() const { return version_; }
  const ChromiumOptions& options() const noexcept { return options_; }
  // The last `bytes` of the browser's stdout/stderr (for failure messages).
  std::string output_tail(size_t bytes = 4000) const;

 private:
  void send(const nlohmann::json& message);
  // Reads one message; false on timeout. Throws when the browser closed the pipe.
  bool receive(nlohmann::json& message, std::chrono::steady_clock::time_point deadline);
  void stop();

  ChromiumOptions options_;
  std::string dir_;  // profile/ and chromium.log
  std::unique_ptr<SpawnedProcess> process_;
  int to_browser_ = -1, from_browser_ = -1;
  std::string inbox_;  // bytes read but not yet split into messages
  int next_id_ = 1;
  std::vector<nlohmann::json> events_;
  std::string version_;
};

class Page {
 public:
  // Opens about:blank in a new tab with the browser's viewport size and enables the Page and
  // Runtime domains (so dialogs and console messages are reported as events).
  explicit Page(Chromium& browser);
  ~Page();  // closes the tab
  Page(const Page&) = delete;
  Page& operator=(const Page&) = delete;

  // Script run in every document before its own scripts (Page.addScriptToEvaluateOnNewDocument).
  void add_init_script(const std::string& source);
  // Navigates and waits for the load event. Throws when navigation fails.
  void navigate(const std::string& url);
  // Evaluates `expression` in the page and returns its value (JSON-serialisable values only);
  // with `await_promise` a returned promise is awaited. Throws on a JavaScript exception.
  nlohmann::json evaluate(const std::string& expression, bool await_promise = false);
  // Waits inside the page (requestAnimationFrame/timer loop, no round trips) until the
  // JavaScript expression `condition` is truthy; false when `timeout` passes first.
  bool wait_for(const std::string& condition, std::chrono::milliseconds timeout);
  // document.documentElement.outerHTML — what `chromium --dump-dom` prints.
  std::string html();
  // A PNG of the viewport.
  std::string screenshot_png();
  // This tab's events with that method (e.g. "Page.javascriptDialogOpening").
  std::vector<nlohmann::json> events(const std::string& method) const;
  const std::string& session() const noexcept { return session_; }

 private:
  Chromium& browser_;
  std::string target_, session_;
};

// Width and height from a PNG's IHDR chunk; false when `png` is not a PNG.
bool png_size(const std::string& png, int& width, int& height);

}  // namespace reqbus::test
