#pragma once
// The example web site: a small shop served by cpp-httplib. Used by examples/web_server.cpp and
// meant for `reqbus demo`, which drives traffic at it.
//
//   GET  /                  home page: product links, a search box, a login link
//   GET  /products/<id>     a product page (ids 1..kProductCount; others are 404)
//   GET  /api/search?q=...  JSON list of matching products; 400 without q
//   GET  /login             the login form
//   POST /login             form fields username, password: 303 to / for demo/demo, 401 for
//                           wrong credentials, 400 when a field is missing
//   GET  /slow?ms=N         answers after N ms (default 250, at most 5000): a slow endpoint
//   anything else           404 page
//
// Thread-safety: the handlers are stateless and run on httplib's worker threads.
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

namespace reqbus::examples {

inline constexpr int kProductCount = 24;

namespace site_detail {

inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

inline std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

inline std::string product_name(int id) {
  static constexpr const char* kAdjectives[] = {"Classic", "Wireless", "Compact", "Organic",
                                                "Vintage", "Ergonomic"};
  static constexpr const char* kNouns[] = {"Coffee Grinder", "Desk Lamp", "Backpack", "Teapot"};
  return std::string(kAdjectives[(id - 1) % 6]) + " " + kNouns[(id - 1) / 6 % 4];
}

inline int product_cents(int id) { return 990 + id * 437 % 9000; }

inline std::string page(std::string_view title, std::string_view body) {
  return "<!doctype html><html><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
         "</title></head><body><h1>" + html_escape(title) + "</h1>" + std::string(body) +
         "<p><a href=\"/\">home</a></p></body></html>\n";
}

inline std::string price(int cents) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%02d", cents / 100, cents % 100);
  return buf;
}

inline const char* reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 500: return "Internal Server Error";
    default: return status < 500 ? "Client Error" : "Server Error";
  }
}

inline bool lower_contains(std::string_view haystack, std::string_view needle) {
  auto lower = [](char c) { return char(c >= 'A' && c <= 'Z' ? c + 32 : c); };
  if (needle.size() > haystack.size()) return false;
  for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    size_t k = 0;
    while (k < needle.size() && lower(haystack[i + k]) == lower(needle[k])) ++k;
    if (k == needle.size()) return true;
  }
  return false;
}

}  // namespace site_detail

inline void install_demo_site(httplib::Server& server) {
  using namespace site_detail;
  using httplib::Request;
  using httplib::Response;

  server.Get("/", [](const Request&, Response& res) {
    std::string body = "<form action=\"/api/search\"><input name=\"q\"><button>search</button></form><ul>";
    for (int id = 1; id <= kProductCount; ++id)
      body += "<li><a href=\"/products/" + std::to_string(id) + "\">" + product_name(id) + "</a></li>";
    body += "</ul><p><a href=\"/login\">log in</a></p>";
    res.set_content(page("reqbus shop", body), "text/html; charset=utf-8");
  });

  server.Get(R"(/products/(\d{1,9}))", [](const Request& req, Response& res) {
    const int id = std::stoi(req.matches[1]);
    if (id < 1 || id > kProductCount) {
      res.status = 404;
      res.set_content(page("No such product", "<p>Product " + std::to_string(id) + " does not exist.</p>"),
                      "text/html; charset=utf-8");
      return;
    }
    res.set_content(page(product_name(id), "<p>Price: " + price(product_cents(id)) +
                                               " EUR</p><form method=\"post\" action=\"/login\">"
                                               "<button>log in to buy</button></form>"),
                    "text/html; charset=utf-8");
  });

  server.Get("/api/search", [](const Request& req, Response& res) {
    const std::string q = req.get_param_value("q");
    if (q.empty() || q.size() > 200) {
      res.status = 400;
      res.set_content(R"({"error":"q: required, 1..200 characters"})" "\n", "application/json");
      return;
    }
    std::string json = "{\"query\":\"" + json_escape(q) + "\",\"results\":[";
    bool first = true;
    for (int id = 1; id <= kProductCount; ++id) {
      if (!lower_contains(product_name(id), q)) continue;
      json += std::string(first ? "" : ",") + "{\"id\":" + std::to_string(id) + ",\"name\":\"" +
              json_escape(product_name(id)) + "\",\"price\":" + price(product_cents(id)) + "}";
      first = false;
    }
    res.set_content(json + "]}\n", "application/json");
  });

  server.Get("/login", [](const Request&, Response& res) {
    res.set_content(page("Log in", "<form method=\"post\" action=\"/login\">"
                                   "<input name=\"username\"><input name=\"password\" type=\"password\">"
                                   "<button>log in</button></form>"),
                    "text/html; charset=utf-8");
  });

  server.Post("/login", [](const Request& req, Response& res) {
    if (!req.has_param("username") || !req.has_param("password")) {
      res.status = 400;
      res.set_content(page("Log in", "<p>username and password are required.</p>"), "text/html; charset=utf-8");
      return;
    }
    if (req.get_param_value("username") == "demo" && req.get_param_value("password") == "demo") {
      res.status = 303;
      res.set_header("Location", "/");
      return;
    }
    res.status = 401;
    res.set_content(page("Log in", "<p>Wrong username or password.</p>"), "text/html; charset=utf-8");
  });

  server.Get("/slow", [](const Request& req, Response& res) {
    long ms = 250;
    if (req.has_param("ms")) {
      const std::string text = req.get_param_value("ms");
      char* end = nullptr;
      ms = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || ms < 0 || ms > 5000) {
        res.status = 400;
        res.set_content("ms: a whole number of milliseconds in 0..5000\n", "text/plain");
        return;
      }
    }
    // Simulates a slow backend call; this is the response's work, not synchronisation.
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    res.set_content("waited " + std::to_string(ms) + " ms\n", "text/plain");
  });

  // Errors without a body (httplib's own 404 for unknown paths, 400s, ...) get a small page.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string title = std::to_string(res.status) + " " + reason(res.status);
    res.set_content(page(title, "<p>" + html_escape(req.path) + "</p>"), "text/html; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  }));

  server.set_exception_handler([](const Request&, Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(page("500 Internal Server Error", "<p>Something went wrong.</p>"), "text/html; charset=utf-8");
  });
}

}  // namespace reqbus::examples
