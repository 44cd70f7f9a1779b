// Hugging Face tokenizer.json (BPE with byte fallback, as Gemma uses) and incremental decoding.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::runtime {

class Tokenizer {
 public:
  // Loads a tokenizer.json. InvalidArgument naming the problem for anything it cannot honour
  // (another model type, a normalizer or pre-tokenizer it does not implement).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json);
  virtual ~Tokenizer() = default;

  // Ids of `text` with special/added tokens matched first on the raw text; no BOS added.
  // Never fails: invalid UTF-8 bytes fall back to <0xNN> byte tokens.
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;
  // Text of `ids` (U+2581 -> space, byte tokens reassembled, invalid UTF-8 -> U+FFFD).
  // Special tokens are included verbatim unless skip_special.
  virtual std::string Decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;

  virtual int32_t vocab_size() const = 0;
  // Id of an exact token string (e.g. "<turn|>"), if present.
  virtual std::optional<int32_t> TokenId(std::string_view token) const = 0;
  // The token's vocabulary string (e.g. "▁Hello", "<0x0A>"); empty for out-of-range ids.
  virtual std::string TokenText(int32_t id) const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
};

// Streaming detokenizer for one sequence: Push returns the text that became final with this token.
// It never returns part of a UTF-8 character, and the concatenation of everything returned (plus
// Flush) equals Decode of all ids pushed.
//
// Push is O(1) amortized per token: the decoders Tessera implements act on each token alone except
// ByteFallback, which turns a run of consecutive <0xNN> tokens into text as a whole (all of it
// U+FFFD when the run is not valid UTF-8, as Hugging Face's decoder does). So a token outside such
// a run is final at once, and a byte run is held back until the token after it (or Flush).
class IncrementalDecoder {
 public:
  // With `skip_special`, special tokens give no text, except those in `keep_special` (markup the
  // caller parses, e.g. Gemma 4's <|channel> and tool-call markers), which appear verbatim.
  explicit IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special = false,
                              std::vector<int32_t> keep_special = {});
  std::string Push(int32_t id);
  // Whatever is still held back (an incomplete UTF-8 tail becomes U+FFFD).
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::vector<int32_t> keep_special_;  // Sorted.
  // Ids not yet turned into text: a run of byte tokens, at most.
  std::vector<int32_t> pending_;
};

// True for a ByteFallback token text "<0xNN>" (two hex digits); sets *byte.
bool ParseByteToken(std::string_view token, uint8_t* byte);

}  // namespace tessera::runtime
