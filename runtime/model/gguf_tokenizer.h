// The tokenizer and chat template a GGUF file carries in its metadata (tokenizer.ggml.*,
// tokenizer.chat_template), turned into what Tessera's tokenizer reads: the Hugging Face
// tokenizer.json equivalent of llama.cpp's "gemma4" tokenizer model.
//
// llama.cpp's converter (conversion/gemma.py Gemma4Model.set_vocab over gguf-py's LlamaHfVocab)
// writes every id's token text, a score (-1000) and a type: CONTROL for the tokenizer's special
// tokens, USER_DEFINED for added tokens beyond the base vocabulary and for the 7 tokens it wants
// rendered (<|channel>, <channel|>, <|tool_call>, <tool_call|>, <|tool_response>,
// <tool_response|>, <|"|>), BYTE for <0xNN>, NORMAL otherwise; the BPE merges as "A B" strings;
// and bos/eos/unk/pad/mask ids. The model is SentencePiece-style BPE: ' ' normalized to U+2581, no
// pre-split, byte fallback, decoded back by the reverse replacement.
//
// Rebuilt here: model.vocab from the token list, model.merges split at the first space after the
// first byte (as llama.cpp splits them), CONTROL / USER_DEFINED / UNKNOWN tokens as added tokens
// matched first on raw text (special for CONTROL and UNKNOWN, and for the 7 the converter made
// USER_DEFINED), the normalizer / decoder of Gemma's tokenizer.json.
//
// Known loss: HF's non-special added tokens that lie inside the base vocabulary (Gemma's
// <unusedN>, runs of newlines and U+2581, HTML tags) become NORMAL in the GGUF, so they are no
// longer matched first on the raw text but reached through the BPE merges, as llama.cpp does. On
// text without such strings the two forms encode identically (gguf_tokenizer_test).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_writer.h"

namespace tessera::runtime {

// The tokenizer.json text for the file's tokenizer.ggml.* metadata. NotFound when the file has no
// tokenizer.ggml.tokens; InvalidArgument naming the key for anything else it cannot rebuild
// (another tokenizer model, token text that is not UTF-8, a malformed merge, arrays of the wrong
// length).
absl::StatusOr<std::string> GgufTokenizerJson(const GgufFile& file);

// tokenizer.chat_template, or NotFound.
absl::StatusOr<std::string> GgufChatTemplate(const GgufFile& file);

// The other direction, for tools/gguf_writer: a checkpoint's tokenizer files written as the
// tokenizer.* metadata llama.cpp's converter writes for Gemma 4 (same keys, order, types and
// values: model "gemma4", tokens by id, scores -1000, types as described above, merges "A B", bos /
// eos / unk / padding / mask ids, add_bos_token true, add_eos_token, chat_template,
// add_space_prefix false). Special tokens are the ones tokenizer_config.json names (bos_token ...
// mask_token and extra_special_tokens / additional_special_tokens), or, without it, the added
// tokens marked special in tokenizer.json.
struct HfTokenizerFiles {
  std::string tokenizer_json;         // Required.
  std::string tokenizer_config_json;  // Optional.
  std::string chat_template;          // Optional (chat_template.jinja).
};
absl::Status AddGgufTokenizerMetadata(const HfTokenizerFiles& files, GgufWriter* writer);

// llama.cpp's token types (llama.h enum llama_token_type / gguf-py TokenType).
enum class GgufTokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

}  // namespace tessera::runtime
