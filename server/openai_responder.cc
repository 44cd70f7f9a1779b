#include "server/openai_responder.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace tessera::server {
namespace {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json ToolCallJson(const v1::ToolCall& call) {
  return {{"id", call.id()},
          {"type", "function"},
          {"function", {{"name", call.name()}, {"arguments", call.arguments()}}}};
}

}  // namespace

OpenAiResponder::OpenAiResponder(const OpenAiCall& call, std::string id, int64_t created,
                                 std::function<std::string(int32_t)> token_text)
    : call_(call),
      id_(std::move(id)),
      created_(created),
      token_text_(std::move(token_text)),
      num_choices_(call.request.n() > 1 ? static_cast<int32_t>(call.request.n()) : 1),
      parser_(call.request) {}

json OpenAiResponder::LogprobsJson(const std::vector<scheduler::TokenLogprob>& lps,
                                   int64_t text_offset) const {
  if (!call_.request.logprobs().enabled()) return nullptr;
  if (call_.chat) {
    json content = json::array();
    for (const auto& lp : lps) {
      const std::string tok = token_text_(lp.token);
      json top = json::array();
      for (const auto& t : lp.top) {
        const std::string tt = token_text_(t.token);
        top.push_back({{"token", tt},
                       {"logprob", t.logprob},
                       {"bytes", std::vector<uint8_t>(tt.begin(), tt.end())}});
      }
      content.push_back({{"token", tok},
                         {"logprob", lp.logprob},
                         {"bytes", std::vector<uint8_t>(tok.begin(), tok.end())},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  int64_t offset = text_offset;
  for (const auto& lp : lps) {
    const std::string tok = token_text_(lp.token);
    tokens.push_back(tok);
    token_logprobs.push_back(lp.logprob);
    json alts = json::object();
    for (const auto& t : lp.top) alts[token_text_(t.token)] = t.logprob;
    top.push_back(alts);
    offsets.push_back(offset);
    offset += static_cast<int64_t>(tok.size());
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json OpenAiResponder::UsageJson() const {
  return {{"prompt_tokens", prompt_tokens_},
          {"completion_tokens", completion_tokens_},
          {"total_tokens", prompt_tokens_ + completion_tokens_},
          {"prompt_tokens_details", {{"cached_tokens", cached_prompt_tokens_}}}};
}

std::string OpenAiResponder::Chunk(int32_t index, json delta_or_text,
                                   const std::vector<scheduler::TokenLogprob>& lps,
                                   const char* finish_reason, int64_t text_offset) const {
  json choice;
  choice["index"] = index;
  choice[call_.chat ? "delta" : "text"] = std::move(delta_or_text);
  choice["logprobs"] = lps.empty() ? json(nullptr) : LogprobsJson(lps, text_offset);
  choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
  json chunk = {{"id", id_},
                {"object", call_.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", call_.model},
                {"choices", json::array({choice})}};
  return absl::StrCat("data: ", Dump(chunk), "\n\n");
}

std::string OpenAiResponder::PieceChunks(int32_t index, ChoiceState& c, const ReplyPiece& piece,
                                         const std::vector<scheduler::TokenLogprob>& lps) {
  std::string out;
  const std::vector<scheduler::TokenLogprob> none;
  const std::vector<scheduler::TokenLogprob>* pending_lps = &lps;  // Sent with the first chunk.
  auto emit = [&](json delta) {
    if (!c.sent_role) {
      delta["role"] = "assistant";
      c.sent_role = true;
    }
    out += Chunk(index, std::move(delta), *pending_lps, nullptr, 0);
    pending_lps = &none;
  };
  if (!piece.reasoning.empty()) emit({{"reasoning_content", piece.reasoning}});
  if (!piece.content.empty()) emit({{"content", piece.content}});
  for (const v1::ToolCall& call : piece.tool_calls) {
    const int32_t k = static_cast<int32_t>(c.tool_calls.size());
    emit({{"tool_calls",
           json::array({{{"index", k},
                         {"id", call.id()},
                         {"type", "function"},
                         {"function", {{"name", call.name()}, {"arguments", ""}}}}})}});
    emit({{"tool_calls",
           json::array({{{"index", k}, {"function", {{"arguments", call.arguments()}}}}})}});
    c.tool_calls.push_back(ToolCallJson(call));
  }
  // Nothing parsed yet (text held back): the role first, and logprobs whenever there are some.
  if (out.empty() && (!c.sent_role || !lps.empty())) emit({{"content", ""}});
  return out;
}

std::string OpenAiResponder::StreamDelta(const scheduler::TokenDelta& delta) {
  ChoiceState& c = choices_[delta.index];
  if (!call_.chat) {
    if (delta.text.empty() && delta.logprobs.empty()) return "";
    const int64_t offset = static_cast<int64_t>(c.content.size());
    c.content += delta.text;
    return Chunk(delta.index, delta.text, delta.logprobs, nullptr, offset);
  }
  return PieceChunks(delta.index, c, parser_.Push(delta.index, delta.text), delta.logprobs);
}

std::string OpenAiResponder::EndChoice(const scheduler::Completion& completion, ReplyPiece* tail) {
  ChoiceState& c = choices_[completion.index];
  *tail = parser_.Finish(completion.index);
  prompt_tokens_ = completion.usage.prompt_tokens;
  if (completion.index == 0) cached_prompt_tokens_ = completion.usage.cached_prompt_tokens;
  completion_tokens_ += completion.usage.completion_tokens;
  if (completion.reason == scheduler::FinishReason::kError && error_.ok()) {
    error_ = completion.status.ok() ? absl::InternalError("generation failed") : completion.status;
  }
  c.finish_reason = ChoiceFinishReason(completion, parser_.num_tool_calls(completion.index));
  ++finished_;
  return c.finish_reason;
}

std::string OpenAiResponder::StreamFinish(const scheduler::Completion& completion) {
  ChoiceState& c = choices_[completion.index];
  ReplyPiece tail;
  const std::string reason = EndChoice(completion, &tail);
  std::string out;
  if (completion.reason == scheduler::FinishReason::kError) {
    out = absl::StrCat("data: ",
                       Dump({{"error",
                              {{"message", std::string(error_.message())},
                               {"type", "server_error"},
                               {"param", nullptr},
                               {"code", "internal_error"}}}}),
                       "\n\n");
  } else {
    if (call_.chat) {
      if (!tail.empty()) out += PieceChunks(completion.index, c, tail, {});
      json delta = json::object();
      if (!c.sent_role) {
        delta["role"] = "assistant";
        delta["content"] = "";
        c.sent_role = true;
      }
      out += Chunk(completion.index, std::move(delta), {}, reason.c_str(), 0);
    } else {
      out += Chunk(completion.index, "", {}, reason.c_str(), 0);
    }
  }
  if (done()) {
    if (call_.include_usage) {
      json chunk = {{"id", id_},
                    {"object", call_.chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", created_},
                    {"model", call_.model},
                    {"choices", json::array()},
                    {"usage", UsageJson()}};
      absl::StrAppend(&out, "data: ", Dump(chunk), "\n\n");
    }
    absl::StrAppend(&out, "data: [DONE]\n\n");
  }
  return out;
}

void OpenAiResponder::AddPiece(ChoiceState& c, ReplyPiece piece) {
  c.content += piece.content;
  c.reasoning += piece.reasoning;
  for (const v1::ToolCall& call : piece.tool_calls) c.tool_calls.push_back(ToolCallJson(call));
}

void OpenAiResponder::Accumulate(const scheduler::TokenDelta& delta) {
  ChoiceState& c = choices_[delta.index];
  AddPiece(c, parser_.Push(delta.index, delta.text));
  c.logprobs.insert(c.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
}

void OpenAiResponder::Accumulate(const scheduler::Completion& completion) {
  ReplyPiece tail;
  EndChoice(completion, &tail);
  AddPiece(choices_[completion.index], std::move(tail));
}

std::string OpenAiResponder::Body() const {
  json choices = json::array();
  for (int32_t i = 0; i < num_choices_; ++i) {
    auto it = choices_.find(i);
    const ChoiceState empty;
    const ChoiceState& c = it == choices_.end() ? empty : it->second;
    json choice;
    choice["index"] = i;
    if (call_.chat) {
      json message = {{"role", "assistant"}};
      // OpenAI: content is null when the reply is only tool calls.
      message["content"] =
          c.content.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.content);
      if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
      if (!c.tool_calls.empty()) message["tool_calls"] = c.tool_calls;
      choice["message"] = std::move(message);
    } else {
      choice["text"] = c.content;
    }
    choice["logprobs"] = LogprobsJson(c.logprobs, 0);
    choice["finish_reason"] = c.finish_reason;
    choices.push_back(std::move(choice));
  }
  json body = {{"id", id_},
               {"object", call_.chat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", call_.model},
               {"choices", std::move(choices)},
               {"usage", UsageJson()}};
  return Dump(body);
}

}  // namespace tessera::server
