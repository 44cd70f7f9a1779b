#include "tests/node_clients.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "httplib.h"
#include "testdata/testdata.h"

namespace tessera::testing {
namespace {

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string RunCommand(const std::string& command, int* exit_code) {
  FILE* p = popen(command.c_str(), "r");
  std::string out;
  if (p == nullptr) {
    *exit_code = -1;
    return "popen failed";
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace

NodeResult RunNodeScript(const std::string& script, const ServerPorts& ports,
                         const std::string& api_key, const std::vector<std::string>& args) {
  const std::string ws = WorkspaceDir();
  std::vector<std::string> quoted;
  for (const auto& a : args) quoted.push_back(ShellQuote(a));
  const std::string command = absl::StrCat(
      "NODE_PATH=", ShellQuote(ws + "/third_party/node/node_modules"),
      " TESSERA_HTTP_PORT=", ports.http, " TESSERA_GRPC_PORT=", ports.grpc,
      " TESSERA_API_KEY=", ShellQuote(api_key), " TESSERA_PROTO_DIR=", ShellQuote(ws + "/proto"),
      " node ", ShellQuote(ws + "/tests/node/" + script), " ", absl::StrJoin(quoted, " "), " 2>&1");
  NodeResult r;
  r.output = RunCommand(command, &r.exit_code);
  return r;
}

HttpReply HttpGet(int port, const std::string& path, const std::string& api_key) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30);
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  auto res = client.Get(path.c_str(), headers);
  if (!res) return {0, "no response"};
  return {res->status, res->body};
}

HttpReply HttpPost(int port, const std::string& path, const std::string& body,
                   const std::string& api_key) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60);
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  auto res = client.Post(path.c_str(), headers, body, "application/json");
  if (!res) return {0, "no response"};
  return {res->status, res->body};
}

std::string WriteTempFile(const std::string& name, const std::string& content) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp ? tmp : "/tmp", "/", name);
  std::ofstream(path) << content;
  return path;
}

std::string PromtoolProblems(const std::string& text) {
  const std::string path = WriteTempFile("scrape.prom", text);
  int code = 0;
  const std::string out = RunCommand("promtool check metrics < " + path + " 2>&1", &code);
  std::string problems;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    if (!absl::StrContains(line, "metric names should not contain ':'")) {
      absl::StrAppend(&problems, line, "\n");
    }
  }
  if (code != 0 && code != 3) absl::StrAppend(&problems, "promtool exit code ", code, "\n");
  return problems;
}

}  // namespace tessera::testing
