// Checks run on one fuzz input against the GGUF reader and the Gemma 4 GGUF loader; shared by the
// libFuzzer target (gguf_fuzz.cc) and the regression test replaying tests/fuzz/corpus/gguf/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera::runtime {

// The bytes go through GgufFile::Parse. A refusal must be InvalidArgument. An accepted file must
// keep every tensor inside the bytes, aligned and sized as its type and shape say, and every typed
// metadata read must answer (a value or an error). Then, by general.architecture: a "gemma4" file
// goes through GgufModelConfig and BindGgufWeights (as a text model; every bound matrix's first
// and last rows are decoded), a "clip" file the same as the mmproj of a small valid text model;
// and the tokenizer metadata through GgufTokenizerJson and Tokenizer::FromJson, encoding and
// decoding a short text. Any refusal on the way must be InvalidArgument (or NotFound for a file
// without a tokenizer). Returns an empty string when all holds, otherwise what broke.
std::string CheckGgufFuzzInput(const uint8_t* data, size_t size);

}  // namespace tessera::runtime
