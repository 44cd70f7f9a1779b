// Checks run on one fuzz input against a tokenizer; shared by the libFuzzer target
// (tokenizer_fuzz.cc) and the regression test that replays tests/fuzz/corpus/tokenizer/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/prompt/tokenizer.h"

namespace tessera::runtime {

// The first byte picks what the rest is:
//   0..159   text: Encode must round-trip through Decode (U+2581 reads back as a space) when the
//            text is valid UTF-8, and Decode must give valid UTF-8 whatever the bytes were;
//   160..223 little-endian int32 ids: Decode and IncrementalDecoder agree and give valid UTF-8;
//   224..255 a tokenizer.json: FromJson accepts it or returns an error, and whatever it accepts
//            can encode and decode the same text.
// Returns an empty string when all holds, otherwise what broke.
std::string CheckTokenizerFuzzInput(const Tokenizer& tokenizer, const uint8_t* data, size_t size);

}  // namespace tessera::runtime
