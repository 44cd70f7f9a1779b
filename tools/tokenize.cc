// Tokenizes or detokenizes JSON on stdin with a tokenizer.json.
//
//   tokenize --tokenizer PATH            ["text", ...]      -> [[id, ...], ...]   (no BOS)
//   tokenize --tokenizer PATH --decode   [[id, ...], ...]   -> ["text", ...]
//
// Exit status 2 for bad usage or input, 1 when the tokenizer cannot be loaded.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "nlohmann/json.hpp"
#include "runtime/prompt/tokenizer.h"

namespace {

int Usage(const char* why) {
  std::fprintf(stderr,
               "tokenize: %s\nusage: tokenize --tokenizer PATH [--decode] [--skip_special]\n"
               "  stdin: a JSON array of strings (or, with --decode, of id arrays)\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool decode = false;
  bool skip_special = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--tokenizer" && i + 1 < argc) {
      path = argv[++i];
    } else if (arg.rfind("--tokenizer=", 0) == 0) {
      path = arg.substr(sizeof("--tokenizer=") - 1);
    } else if (arg == "--decode") {
      decode = true;
    } else if (arg == "--skip_special") {
      skip_special = true;
    } else {
      return Usage(("unknown argument " + arg).c_str());
    }
  }
  if (path.empty()) return Usage("--tokenizer PATH is required");

  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  const nlohmann::json request = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_array()) {
    return Usage("stdin is not a JSON array");
  }
  auto tokenizer = tessera::runtime::Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "tokenize: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }

  nlohmann::json response = nlohmann::json::array();
  for (size_t i = 0; i < request.size(); ++i) {
    const nlohmann::json& item = request[i];
    if (!decode) {
      if (!item.is_string())
        return Usage(("element " + std::to_string(i) + " is not a string").c_str());
      response.push_back((*tokenizer)->Encode(item.get_ref<const std::string&>()));
      continue;
    }
    if (!item.is_array())
      return Usage(("element " + std::to_string(i) + " is not an array").c_str());
    std::vector<int32_t> ids;
    for (const nlohmann::json& id : item) {
      if (!id.is_number_integer()) {
        return Usage(("element " + std::to_string(i) + " holds a non-integer id").c_str());
      }
      ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    response.push_back((*tokenizer)->Decode(ids, skip_special));
  }
  // Invalid UTF-8 cannot come out of Decode (it substitutes U+FFFD), so dump() cannot throw.
  std::cout << response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}
