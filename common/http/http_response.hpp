// HTTP/1.1 responses, sans-IO: status, headers and body to bytes.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace thor::http {

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, e.g. {"Allow", "GET, HEAD"}
};

// "OK", "Not Found", ... ("Unknown" for codes Thor never sends).
std::string_view reason_phrase(int status);

// The response as bytes. head_only: headers (with the body's Content-Length) but no body, for HEAD.
// keep_alive false adds "Connection: close".
std::string serialize(const Response& r, bool keep_alive, bool head_only = false);

// A JSON error body: {"error": message, "status": code}.
Response error_response(int status, std::string_view message);

}  // namespace thor::http
