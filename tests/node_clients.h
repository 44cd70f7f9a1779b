// Helpers for end-to-end tests that drive the real server with Node.js clients (tests/node/*.js):
// run a script with the server's ports, the API key and NODE_PATH set; scrape /metrics; run
// promtool on a scrape.
#pragma once

#include <string>
#include <vector>

#include "tests/server_process.h"

namespace tessera::testing {

struct NodeResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together.
};

// Runs `node <workspace>/tests/node/<script> args...` against `ports`.
NodeResult RunNodeScript(const std::string& script, const ServerPorts& ports,
                         const std::string& api_key, const std::vector<std::string>& args = {});

// GET http://127.0.0.1:<port><path> with an optional bearer key; returns status and body.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply HttpGet(int port, const std::string& path, const std::string& api_key = "");
HttpReply HttpPost(int port, const std::string& path, const std::string& body,
                   const std::string& api_key = "");

// `promtool check metrics` on `text`: its problem lines other than the colon-in-name lint that
// every vLLM-style name draws. Empty means clean.
std::string PromtoolProblems(const std::string& text);

// Writes `content` to a new file under $TEST_TMPDIR and returns its path.
std::string WriteTempFile(const std::string& name, const std::string& content);

}  // namespace tessera::testing
