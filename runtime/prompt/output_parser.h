// Splits Gemma 4's generated text into what the OpenAI API returns separately: the answer
// (`content`), the thought channel (`reasoning_content`) and tool calls, incrementally, as the text
// streams in.
//
// Markup (chat template, MODEL.md):
//   <|channel>thought\n ... <channel|>       reasoning (the "thought\n" header is dropped)
//   <|tool_call>call:NAME{ARGS}<tool_call|>  a tool call (tool_calls.h converts ARGS to JSON)
//   <|tool_response>                          the model waits for results: the output ends here
// Text deltas may split a marker anywhere; a possible marker prefix at the end of a delta is held
// back until the next delta (or Finish) decides it. Inside a call, `<tool_call|>` within a
// <|"|>...<|"|> string does not close it. Inside the thought channel everything up to <channel|>
// is reasoning.
//
// What reaches `content`:
// - text outside markup, except whitespace directly around removed markup (the whitespace before
//   a marker and at the start of the text after a thought block or a call; the template itself
//   trims it away around thoughts), so a reply that is only calls has empty content;
// - a tool call whose markup does not parse, or that is still open when the output ends, verbatim
//   (markers included), and `problems` says why: the client then sees exactly what the model wrote
//   rather than a call that is not one. A call is therefore emitted only once it is closed and its
//   arguments convert, as one event (name and complete arguments); the server streams it as
//   OpenAI does (the name, then the arguments).
// - never a closing marker with nothing open (<channel|>, and <tool_call|> when calls are parsed):
//   it is dropped, and `problems` says so.
// A thought channel still open at the end stays reasoning (`reasoning_unterminated`): the answer
// was cut off while thinking (typically by max_tokens).
//
// The input is text with special tokens kept verbatim (the markers are special tokens in Gemma 4's
// tokenizer). Not thread-safe; one parser per generated sequence.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/prompt/tool_calls.h"

namespace tessera::runtime {

struct OutputEvent {
  enum class Type { kContent, kReasoning, kToolCall };
  Type type = Type::kContent;
  std::string text;          // kContent, kReasoning: the new text.
  int32_t tool_index = -1;   // kToolCall: 0, 1, ... in output order.
  ParsedToolCall tool_call;  // kToolCall.
};

// Everything parsed so far; complete after Finish. `content` and `reasoning` are the
// concatenations of the events' texts.
struct ParsedOutput {
  std::string content;
  std::string reasoning;
  std::vector<ParsedToolCall> tool_calls;
  bool reasoning_unterminated = false;
  // The output reached <|tool_response> (nothing after it is parsed).
  bool awaits_tool_response = false;
  // Markup that was left in content or ignored, and why, in order.
  std::vector<std::string> problems;
};

struct OutputParserOptions {
  // Parse <|tool_call> blocks (and end at <|tool_response>); when false they are ordinary content
  // (a request without tools, or tool_choice "none").
  bool tool_calls = true;
};

class Gemma4OutputParser {
 public:
  explicit Gemma4OutputParser(OutputParserOptions options = {});

  // Feeds the next piece of generated text; appends the events it completes to `events`.
  void Push(std::string_view text, std::vector<OutputEvent>* events);
  // The output ended: resolves what was held back (see the header comment).
  void Finish(std::vector<OutputEvent>* events);

  const ParsedOutput& output() const { return output_; }

 private:
  enum class State { kText, kChannelHeader, kChannel, kToolCall, kEnded };

  void Process(std::vector<OutputEvent>* events);
  // Each returns false when it needs more text to decide.
  bool ProcessText(std::vector<OutputEvent>* events);
  bool ProcessChannelHeader();
  bool ProcessChannel(std::vector<OutputEvent>* events);
  bool ProcessToolCall(std::vector<OutputEvent>* events);

  void EmitContent(std::string_view text, std::vector<OutputEvent>* events);
  void EmitReasoning(std::string_view text, std::vector<OutputEvent>* events);
  // Markup starts: whitespace held before it is dropped (kept aside in case the markup turns out
  // to be garbled).
  void BeginMarkup();
  // Markup ended: the next content segment starts (its leading whitespace is dropped).
  void EndMarkup();
  // Markup that did not parse goes to content as written, with the whitespace before it.
  void RestoreAsContent(std::string_view raw, std::vector<OutputEvent>* events);

  const OutputParserOptions options_;
  State state_ = State::kText;
  std::string pending_;  // Text not yet consumed by the current state.
  // Content whitespace not yet emitted: it is dropped if markup follows.
  std::string held_space_;
  std::string space_before_markup_;
  bool after_markup_ = false;      // The current content segment follows markup.
  bool segment_has_text_ = false;  // The current content segment has emitted non-space text.
  // kToolCall: the body so far, how far it is scanned, and whether the scan is inside a string.
  std::string call_;
  size_t call_scanned_ = 0;
  bool in_string_ = false;
  size_t ignored_bytes_ = 0;    // After <|tool_response>.
  size_t first_new_event_ = 0;  // Events from here on were added by the current call.
  ParsedOutput output_;
};

}  // namespace tessera::runtime
