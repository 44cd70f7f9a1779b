#include "runtime/prompt/output_parser.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tessera::runtime {
namespace {

constexpr std::string_view kChannelBegin = "<|channel>";
constexpr std::string_view kChannelEnd = "<channel|>";
constexpr std::string_view kThoughtHeader = "thought\n";
constexpr std::string_view kSpace = " \n\t\r";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// `s` is shorter than `marker` and could still become it.
bool IsProperPrefix(std::string_view s, std::string_view marker) {
  return s.size() < marker.size() && marker.substr(0, s.size()) == s;
}

// The length of the longest suffix of `s` that is a proper prefix of `marker` (text that must wait
// for the next delta).
size_t PartialMarkerSuffix(std::string_view s, std::string_view marker) {
  for (size_t n = std::min(s.size(), marker.size() - 1); n > 0; --n) {
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

// Appends to the last event when it is of the same type and was added by this call.
void Append(OutputEvent::Type type, std::string_view text, size_t first_new,
            std::vector<OutputEvent>* events) {
  if (events->size() > first_new && events->back().type == type) {
    events->back().text.append(text);
    return;
  }
  OutputEvent e;
  e.type = type;
  e.text.assign(text);
  events->push_back(std::move(e));
}

absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

Gemma4OutputParser::Gemma4OutputParser(OutputParserOptions options) : options_(options) {}

void Gemma4OutputParser::Push(std::string_view text, std::vector<OutputEvent>* events) {
  if (state_ == State::kEnded) {
    ignored_bytes_ += text.size();
    return;
  }
  first_new_event_ = events->size();
  pending_.append(text);
  Process(events);
}

void Gemma4OutputParser::Process(std::vector<OutputEvent>* events) {
  for (;;) {
    if (pending_.empty() && state_ != State::kToolCall) return;
    bool progressed = false;
    switch (state_) {
      case State::kText:
        progressed = ProcessText(events);
        break;
      case State::kChannelHeader:
        progressed = ProcessChannelHeader();
        break;
      case State::kChannel:
        progressed = ProcessChannel(events);
        break;
      case State::kToolCall:
        progressed = ProcessToolCall(events);
        break;
      case State::kEnded:
        ignored_bytes_ += pending_.size();
        pending_.clear();
        return;
    }
    if (!progressed) return;
  }
}

bool Gemma4OutputParser::ProcessText(std::vector<OutputEvent>* events) {
  const size_t lt = pending_.find('<');
  if (lt == std::string::npos) {
    EmitContent(pending_, events);
    pending_.clear();
    return false;
  }
  if (lt > 0) {
    EmitContent(std::string_view(pending_).substr(0, lt), events);
    pending_.erase(0, lt);
  }
  std::vector<std::string_view> markers = {kChannelBegin, kChannelEnd};
  if (options_.tool_calls) {
    markers.push_back(kToolCallBegin);
    markers.push_back(kToolCallEnd);
    markers.push_back(kToolResponseBegin);
  }
  for (std::string_view m : markers) {
    if (!StartsWith(pending_, m)) continue;
    if (m == kChannelEnd || m == kToolCallEnd) {
      // A closing marker with nothing open: a control token, not text.
      output_.problems.push_back(absl::StrCat("a stray ", Av(m), " was dropped"));
      pending_.erase(0, m.size());
      return true;
    }
    BeginMarkup();
    pending_.erase(0, m.size());
    if (m == kChannelBegin) {
      state_ = State::kChannelHeader;
    } else if (m == kToolCallBegin) {
      state_ = State::kToolCall;
      call_.clear();
      call_scanned_ = 0;
      in_string_ = false;
    } else {
      output_.awaits_tool_response = true;
      state_ = State::kEnded;
    }
    return true;
  }
  for (std::string_view m : markers) {
    if (IsProperPrefix(pending_, m)) return false;  // Wait for the next delta.
  }
  EmitContent("<", events);
  pending_.erase(0, 1);
  return true;
}

bool Gemma4OutputParser::ProcessChannelHeader() {
  if (StartsWith(pending_, kThoughtHeader)) {
    pending_.erase(0, kThoughtHeader.size());
  } else if (IsProperPrefix(pending_, kThoughtHeader)) {
    return false;
  }
  // Without the header, everything in the channel is reasoning.
  state_ = State::kChannel;
  return true;
}

bool Gemma4OutputParser::ProcessChannel(std::vector<OutputEvent>* events) {
  const size_t end = pending_.find(kChannelEnd);
  if (end != std::string::npos) {
    EmitReasoning(std::string_view(pending_).substr(0, end), events);
    pending_.erase(0, end + kChannelEnd.size());
    state_ = State::kText;
    EndMarkup();
    return true;
  }
  const size_t emit = pending_.size() - PartialMarkerSuffix(pending_, kChannelEnd);
  EmitReasoning(std::string_view(pending_).substr(0, emit), events);
  pending_.erase(0, emit);
  return false;
}

bool Gemma4OutputParser::ProcessToolCall(std::vector<OutputEvent>* events) {
  call_.append(pending_);
  pending_.clear();
  while (call_scanned_ < call_.size()) {
    const size_t lt = call_.find('<', call_scanned_);
    if (lt == std::string::npos) {
      call_scanned_ = call_.size();
      break;
    }
    call_scanned_ = lt;
    const std::string_view rest = std::string_view(call_).substr(lt);
    if (StartsWith(rest, kGemmaQuote)) {
      in_string_ = !in_string_;
      call_scanned_ += kGemmaQuote.size();
      continue;
    }
    if (!in_string_ && StartsWith(rest, kToolCallEnd)) {
      const std::string body = call_.substr(0, lt);
      pending_ = call_.substr(lt + kToolCallEnd.size());
      call_.clear();
      state_ = State::kText;
      absl::StatusOr<ParsedToolCall> call = ParseGemmaToolCall(body);
      if (call.ok()) {
        OutputEvent e;
        e.type = OutputEvent::Type::kToolCall;
        e.tool_index = static_cast<int32_t>(output_.tool_calls.size());
        e.tool_call = *call;
        output_.tool_calls.push_back(*std::move(call));
        events->push_back(std::move(e));
        EndMarkup();
      } else {
        output_.problems.push_back(
            absl::StrCat("a tool call was left in content as written: ", call.status().message()));
        RestoreAsContent(std::string(kToolCallBegin) + body + std::string(kToolCallEnd), events);
      }
      return true;
    }
    if (IsProperPrefix(rest, kGemmaQuote) || (!in_string_ && IsProperPrefix(rest, kToolCallEnd))) {
      return false;  // A marker may be completing in the next delta.
    }
    ++call_scanned_;
  }
  return false;
}

void Gemma4OutputParser::Finish(std::vector<OutputEvent>* events) {
  first_new_event_ = events->size();
  switch (state_) {
    case State::kText:
      EmitContent(pending_, events);  // A marker prefix that never completed is text.
      break;
    case State::kChannelHeader:
    case State::kChannel:
      EmitReasoning(pending_, events);
      output_.reasoning_unterminated = true;
      break;
    case State::kToolCall:
      call_.append(pending_);
      output_.problems.push_back(
          "a tool call was left in content as written: the output ended before <tool_call|>");
      RestoreAsContent(std::string(kToolCallBegin) + call_, events);
      call_.clear();
      break;
    case State::kEnded:
      break;
  }
  pending_.clear();
  // Trailing whitespace of the reply is the model's text.
  if (!held_space_.empty()) {
    Append(OutputEvent::Type::kContent, held_space_, first_new_event_, events);
    output_.content.append(held_space_);
    held_space_.clear();
  }
  if (ignored_bytes_ > 0) {
    output_.problems.push_back(absl::StrCat("the output continued for ", ignored_bytes_,
                                            " bytes after <|tool_response>; ignored"));
    ignored_bytes_ = 0;
  }
  state_ = State::kEnded;
}

void Gemma4OutputParser::EmitContent(std::string_view text, std::vector<OutputEvent>* events) {
  if (after_markup_ && !segment_has_text_) {
    const size_t first = text.find_first_not_of(kSpace);
    if (first == std::string_view::npos) return;
    text.remove_prefix(first);
  }
  const size_t last = text.find_last_not_of(kSpace);
  if (last == std::string_view::npos) {
    held_space_.append(text);
    return;
  }
  std::string out = std::move(held_space_);
  held_space_.clear();
  out.append(text.substr(0, last + 1));
  held_space_.assign(text.substr(last + 1));
  segment_has_text_ = true;
  output_.content.append(out);
  Append(OutputEvent::Type::kContent, out, first_new_event_, events);
}

void Gemma4OutputParser::EmitReasoning(std::string_view text, std::vector<OutputEvent>* events) {
  if (text.empty()) return;
  output_.reasoning.append(text);
  Append(OutputEvent::Type::kReasoning, text, first_new_event_, events);
}

void Gemma4OutputParser::BeginMarkup() {
  space_before_markup_ = std::move(held_space_);
  held_space_.clear();
}

void Gemma4OutputParser::EndMarkup() {
  after_markup_ = true;
  segment_has_text_ = false;
  held_space_.clear();
}

void Gemma4OutputParser::RestoreAsContent(std::string_view raw, std::vector<OutputEvent>* events) {
  held_space_ = std::move(space_before_markup_);
  space_before_markup_.clear();
  EmitContent(raw, events);
}

}  // namespace tessera::runtime
