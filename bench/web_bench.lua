-- wrk script for bench/web_bench.cpp: a mix of the demo site's requests (examples/demo_site.hpp):
-- home, product pages (some unknown ids -> 404), search (some without q -> 400), the login
-- form and a failed login POST (401), and unknown paths (404). Realistic browser headers.
-- Visitors behave like browsers: 1 request in 10 is a new visitor (no cookie); the others return
-- with a session cookie the server set earlier (a per-thread jar of the last 64). Until the jar
-- has cookies — always, against a server that sets none — a returning visitor sends a stale
-- cookie of the same size, so both server variants parse the same request bytes.
-- Headers go out in one fixed order, as a browser sends them: wrk.format writes a Lua table's
-- headers in hash order, which changes from one wrk process to the next, and the order decides
-- the shape of httplib's header map and so the cost of every header lookup (~300 instructions a
-- request between two orders: noise both instruments attributed to publishing).
local paths = {
  "/", "/products/1", "/products/7", "/products/12", "/products/24", "/products/99",
  "/api/search?q=shoe", "/api/search?q=bag", "/api/search", "/login", "/missing/page",
  "/products/3", "/products/5", "/", "/products/18",
}
local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}
local counter = 0
local jar, jar_next = {}, 1
local stale = "reqbus_sid=00000000000000000000000000000000"

response = function(status, headers, body)
  local cookie = headers["Set-Cookie"]
  if cookie then
    jar[jar_next] = cookie:match("^[^;]*")
    jar_next = (jar_next % 64) + 1
  end
end

-- One request with its headers in the order given: a list of {name, value} pairs.
local function format(method, path, headers, body)
  local s = { method .. " " .. path .. " HTTP/1.1", "Host: " .. wrk.headers["Host"] }
  for _, h in ipairs(headers) do
    s[#s + 1] = h[1] .. ": " .. h[2]
  end
  if body then
    s[#s + 1] = "Content-Length: " .. string.len(body)
  end
  s[#s + 1] = ""
  s[#s + 1] = body or ""
  return table.concat(s, "\r\n")
end

request = function()
  counter = counter + 1
  local headers = {
    { "User-Agent", agents[(counter % #agents) + 1] },
    { "Referer", "https://www.google.com/search?q=shop" },
  }
  if counter % 10 ~= 0 then
    headers[#headers + 1] = { "Cookie", jar[(counter % 64) + 1] or stale }
  end
  if counter % 20 == 0 then
    headers[#headers + 1] = { "Content-Type", "application/x-www-form-urlencoded" }
    return format("POST", "/login", headers, "username=demo&password=wrong")
  end
  return format("GET", paths[(counter % #paths) + 1], headers)
end
