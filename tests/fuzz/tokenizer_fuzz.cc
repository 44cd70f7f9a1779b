// libFuzzer target for the tokenizer (built outside Bazel by tests/fuzz/run.sh; replayed under
// bazel test by tokenizer_regression_test). The vocabulary is Gemma 4's file, or the one named by
// $TESSERA_FUZZ_TOKENIZER.
#include "tests/fuzz/tokenizer_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace tessera::runtime {
namespace {

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = s[i];
    size_t n;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, min = 0x10000;
    } else {
      return false;
    }
    uint32_t cp = c & (0x3F >> n);
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const uint8_t cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string ReplaceMetaspace(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::string CheckText(const Tokenizer& tokenizer, std::string_view text) {
  const std::vector<int32_t> ids = tokenizer.Encode(text);
  for (int32_t id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) return "Encode produced an out-of-range id";
  }
  const std::string decoded = tokenizer.Decode(ids);
  if (!ValidUtf8(decoded)) return "Decode produced invalid UTF-8";
  if (ValidUtf8(text) && decoded != ReplaceMetaspace(text)) {
    return "Decode(Encode(text)) != text";
  }
  return "";
}

std::string CheckIds(const Tokenizer& tokenizer, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= size; i += 4) {
    int32_t id;
    std::memcpy(&id, data + i, 4);
    // Mostly ids in range, so that byte tokens and specials come up often.
    if (id >= 0) id %= tokenizer.vocab_size() + 8;
    ids.push_back(id);
  }
  for (bool skip : {false, true}) {
    const std::string whole = tokenizer.Decode(ids, skip);
    if (!ValidUtf8(whole)) return "Decode produced invalid UTF-8";
    IncrementalDecoder decoder(&tokenizer, skip);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string delta = decoder.Push(id);
      if (!ValidUtf8(delta)) return "IncrementalDecoder::Push returned part of a character";
      streamed += delta;
    }
    streamed += decoder.Flush();
    if (streamed != whole) return "IncrementalDecoder output != Decode";
  }
  return "";
}

std::string CheckJson(std::string_view json) {
  auto loaded = Tokenizer::FromJson(json);
  if (!loaded.ok()) {
    return loaded.status().message().empty() ? "FromJson failed without a message" : "";
  }
  const Tokenizer& t = **loaded;
  const std::string_view sample = "a b\n<s> \xC3\xA9\xF0\x9F\xA4\x97 \xFF";
  const std::vector<int32_t> ids = t.Encode(sample);
  for (int32_t id : ids) {
    if (id < 0 || id >= t.vocab_size()) return "loaded tokenizer produced an out-of-range id";
  }
  if (!ValidUtf8(t.Decode(ids))) return "loaded tokenizer decoded to invalid UTF-8";
  return "";
}

}  // namespace

std::string CheckTokenizerFuzzInput(const Tokenizer& tokenizer, const uint8_t* data, size_t size) {
  if (size == 0) return "";
  const uint8_t mode = data[0];
  ++data, --size;
  if (mode < 160)
    return CheckText(tokenizer, std::string_view(reinterpret_cast<const char*>(data), size));
  if (mode < 224) return CheckIds(tokenizer, data, size);
  return CheckJson(std::string_view(reinterpret_cast<const char*>(data), size));
}

}  // namespace tessera::runtime

namespace {
const tessera::runtime::Tokenizer* g_tokenizer = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("TESSERA_FUZZ_TOKENIZER");
  auto t = tessera::runtime::Tokenizer::FromFile(
      path ? path : "third_party/tokenizer/gemma4/tokenizer.json");
  if (!t.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", std::string(t.status().message()).c_str());
    std::abort();
  }
  g_tokenizer = t->release();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string why = tessera::runtime::CheckTokenizerFuzzInput(*g_tokenizer, data, size);
  if (!why.empty()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
