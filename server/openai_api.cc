#include "server/openai_api.h"

#include <cmath>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/prompt/media_inputs.h"
#include "server/openai_tools.h"

namespace tessera::server {
namespace {

using nlohmann::json;

// Records which parameter an error is about, for the error body.
struct Parser {
  const OpenAiOptions& options;
  OpenAiCall* call;

  absl::Status Error(const std::string& param, const std::string& message) {
    call->error_param = param;
    return absl::InvalidArgumentError(message);
  }

  absl::Status Number(const json& body, const char* key, double lo, double hi, bool lo_open,
                      std::optional<double>* out) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_number()) return Error(key, absl::StrCat("'", key, "' must be a number"));
    const double v = it->get<double>();
    if (!std::isfinite(v) || v > hi || v < lo || (lo_open && v == lo)) {
      return Error(key, absl::StrFormat("'%s' is %g; it must be in %c%g, %g]", key, v,
                                        lo_open ? '(' : '[', lo, hi));
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Integer(const json& body, const char* key, int64_t lo, int64_t hi,
                       std::optional<int64_t>* out) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_number_integer()) {
      return Error(key, absl::StrCat("'", key, "' must be an integer"));
    }
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error(key, absl::StrCat("'", key, "' must be at most ", hi));
    }
    const int64_t v = it->get<int64_t>();
    if (v < lo || v > hi) {
      return Error(key, absl::StrCat("'", key, "' is ", v, "; it must be in [", lo, ", ", hi, "]"));
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Bool(const json& body, const char* key, bool* out) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_boolean()) return Error(key, absl::StrCat("'", key, "' must be a boolean"));
    *out = it->get<bool>();
    return absl::OkStatus();
  }

  // Sampling, stopping and logprobs parameters shared by both endpoints.
  absl::Status Common(const json& body) {
    v1::GenerateRequest& r = call->request;
    auto model = body.find("model");
    if (model != body.end() && !model->is_null()) {
      if (!model->is_string()) return Error("model", "'model' must be a string");
      call->model = model->get<std::string>();
      if (!options.model_id.empty() && call->model != options.model_id) {
        call->error_param = "model";
        return absl::NotFoundError(absl::StrCat("The model '", call->model,
                                                "' does not exist; this server serves '",
                                                options.model_id, "'"));
      }
    }
    if (call->model.empty()) call->model = options.model_id;

    // n's limit (--max_choices) is checked where both APIs meet (EngineBackend).
    std::optional<int64_t> n;
    if (auto s = Integer(body, "n", 1, UINT32_MAX, &n); !s.ok()) return s;
    if (n) r.set_n(static_cast<uint32_t>(*n));
    std::optional<int64_t> best_of;
    if (auto s = Integer(body, "best_of", 1, UINT32_MAX, &best_of); !s.ok()) return s;
    if (best_of && *best_of != n.value_or(1)) {
      return Error("best_of",
                   "'best_of' other than n is not supported (every generated choice is returned)");
    }

    // The server's --max_tokens_limit is checked where both APIs meet (EngineBackend); here only
    // what fits the proto.
    std::optional<int64_t> max_tokens;
    for (const char* key : {"max_completion_tokens", "max_tokens"}) {
      if (max_tokens) break;
      if (auto s = Integer(body, key, 1, UINT32_MAX, &max_tokens); !s.ok()) return s;
    }
    if (max_tokens) r.mutable_stopping()->set_max_tokens(static_cast<uint32_t>(*max_tokens));
    std::optional<int64_t> min_tokens;
    if (auto s = Integer(body, "min_tokens", 0, UINT32_MAX, &min_tokens); !s.ok()) return s;
    if (min_tokens) r.mutable_stopping()->set_min_tokens(static_cast<uint32_t>(*min_tokens));

    std::optional<double> v;
    if (auto s = Number(body, "temperature", 0, 2, false, &v); !s.ok()) return s;
    if (v) r.mutable_sampling()->set_temperature(static_cast<float>(*v));
    v.reset();
    if (auto s = Number(body, "top_p", 0, 1, true, &v); !s.ok()) return s;
    if (v) r.mutable_sampling()->set_top_p(static_cast<float>(*v));
    v.reset();
    if (auto s = Number(body, "min_p", 0, 1, false, &v); !s.ok()) return s;
    if (v) r.mutable_sampling()->set_min_p(static_cast<float>(*v));
    v.reset();
    if (auto s = Number(body, "presence_penalty", -2, 2, false, &v); !s.ok()) return s;
    if (v) r.mutable_sampling()->set_presence_penalty(static_cast<float>(*v));
    v.reset();
    if (auto s = Number(body, "frequency_penalty", -2, 2, false, &v); !s.ok()) return s;
    if (v) r.mutable_sampling()->set_frequency_penalty(static_cast<float>(*v));
    v.reset();
    if (auto s = Number(body, "repetition_penalty", 0, 2, true, &v); !s.ok()) return s;
    if (v) r.mutable_sampling()->set_repetition_penalty(static_cast<float>(*v));
    std::optional<int64_t> top_k;
    if (auto s = Integer(body, "top_k", -1, 1 << 20, &top_k); !s.ok()) return s;
    if (top_k && *top_k > 0) r.mutable_sampling()->set_top_k(static_cast<uint32_t>(*top_k));
    auto seed = body.find("seed");
    if (seed != body.end() && !seed->is_null()) {
      if (!seed->is_number_integer()) return Error("seed", "'seed' must be an integer");
      r.mutable_sampling()->set_seed(seed->is_number_unsigned()
                                         ? seed->get<uint64_t>()
                                         : static_cast<uint64_t>(seed->get<int64_t>()));
    }

    auto stop = body.find("stop");
    if (stop != body.end() && !stop->is_null()) {
      std::vector<std::string> stops;
      if (stop->is_string()) {
        stops.push_back(stop->get<std::string>());
      } else if (stop->is_array()) {
        for (const json& s : *stop) {
          if (!s.is_string()) return Error("stop", "'stop' must be a string or array of strings");
          stops.push_back(s.get<std::string>());
        }
      } else {
        return Error("stop", "'stop' must be a string or array of strings");
      }
      if (stops.size() > 16) return Error("stop", "'stop' has more than 16 strings");
      for (const std::string& s : stops) {
        if (s.empty() || s.size() > 256) {
          return Error("stop", "each 'stop' string must be 1 to 256 bytes");
        }
        r.mutable_stopping()->add_stop(s);
      }
    }
    auto stop_ids = body.find("stop_token_ids");
    if (stop_ids != body.end() && !stop_ids->is_null()) {
      if (!stop_ids->is_array())
        return Error("stop_token_ids", "'stop_token_ids' must be an array");
      for (const json& id : *stop_ids) {
        if (!id.is_number_unsigned()) {
          return Error("stop_token_ids", "'stop_token_ids' must hold non-negative integers");
        }
        r.mutable_stopping()->add_stop_token_ids(static_cast<uint32_t>(id.get<uint64_t>()));
      }
    }
    bool ignore_eos = false;
    if (auto s = Bool(body, "ignore_eos", &ignore_eos); !s.ok()) return s;
    r.mutable_stopping()->set_ignore_eos(ignore_eos);

    bool stream = false;
    if (auto s = Bool(body, "stream", &stream); !s.ok()) return s;
    call->stream = stream;
    auto so = body.find("stream_options");
    if (so != body.end() && !so->is_null()) {
      if (!so->is_object()) return Error("stream_options", "'stream_options' must be an object");
      bool include_usage = false;
      if (auto s = Bool(*so, "include_usage", &include_usage); !s.ok()) return s;
      call->include_usage = include_usage;
    }

    auto cache_salt = body.find("cache_salt");
    if (cache_salt != body.end() && !cache_salt->is_null()) {
      if (!cache_salt->is_string()) return Error("cache_salt", "'cache_salt' must be a string");
      r.set_cache_salt(cache_salt->get<std::string>());
    }
    std::optional<int64_t> priority;
    if (auto s = Integer(body, "priority", -(1 << 30), 1 << 30, &priority); !s.ok()) return s;
    if (priority) r.set_priority(static_cast<int32_t>(*priority));
    return absl::OkStatus();
  }

  absl::Status ImageFromUrl(const std::string& url, v1::Image* image) {
    if (absl::StartsWith(url, "data:")) {
      const size_t comma = url.find(',');
      if (comma == std::string::npos) {
        return Error("messages", "image_url data URI has no ',' before its data");
      }
      const std::string header = url.substr(5, comma - 5);
      if (!absl::EndsWith(header, ";base64")) {
        return Error("messages", "image_url data URI must be base64 (data:image/png;base64,...)");
      }
      const std::string mime = header.substr(0, header.size() - 7);
      if (!mime.empty() && mime != "image/png" && mime != "image/jpeg" && mime != "image/jpg") {
        return Error("messages", absl::StrCat("image_url data URI has type '", mime,
                                              "'; supported: image/png, image/jpeg"));
      }
      std::string bytes;
      if (!absl::Base64Unescape(absl::string_view(url).substr(comma + 1), &bytes)) {
        return Error("messages", "image_url data URI is not valid base64");
      }
      image->set_encoded(std::move(bytes));
      if (mime == "image/jpg") {
        image->set_mime_type("image/jpeg");
      } else {
        image->set_mime_type(mime);
      }
      return absl::OkStatus();
    }
    if (absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://")) {
      if (options.image_fetcher == nullptr) {
        return Error("messages",
                     "remote image URLs are not allowed on this server; send the image inline as "
                     "a data: URI (or start the server with --allowed_image_url_prefixes)");
      }
      absl::StatusOr<std::string> bytes =
          options.image_fetcher->Fetch(url, options.limits.max_image_bytes);
      if (!bytes.ok()) return Error("messages", std::string(bytes.status().message()));
      image->set_encoded(*std::move(bytes));
      return absl::OkStatus();
    }
    return Error("messages", "image_url must be a data: URI (or an allowed http(s) URL)");
  }

  absl::Status Messages(const json& body) {
    auto messages = body.find("messages");
    if (messages == body.end()) return Error("messages", "'messages' is required");
    if (!messages->is_array() || messages->empty()) {
      return Error("messages", "'messages' must be a non-empty array");
    }
    int images = 0;
    for (size_t i = 0; i < messages->size(); ++i) {
      const json& m = (*messages)[i];
      const std::string where = absl::StrCat("messages[", i, "]");
      if (!m.is_object()) return Error("messages", absl::StrCat(where, " must be an object"));
      auto role = m.find("role");
      if (role == m.end() || !role->is_string()) {
        return Error("messages", absl::StrCat(where, ".role must be a string"));
      }
      std::string r = role->get<std::string>();
      if (r == "assistant") r = "model";
      if (r != "system" && r != "developer" && r != "user" && r != "model" && r != "tool") {
        return Error("messages",
                     absl::StrCat(where, ".role '", role->get<std::string>(),
                                  "' is unknown; use system, developer, user, assistant or tool"));
      }
      v1::Message* msg = call->request.add_messages();
      msg->set_role(r);
      if (auto s = ParseMessageToolFields(m, r, where, msg, &call->error_param); !s.ok()) return s;
      auto content = m.find("content");
      if (content == m.end() || content->is_null()) continue;
      if (content->is_string()) {
        msg->add_parts()->set_text(content->get<std::string>());
        continue;
      }
      if (!content->is_array()) {
        return Error("messages", absl::StrCat(where, ".content must be a string or an array"));
      }
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        const std::string pwhere = absl::StrCat(where, ".content[", j, "]");
        if (!part.is_object()) return Error("messages", pwhere + " must be an object");
        auto type = part.find("type");
        if (type == part.end() || !type->is_string()) {
          return Error("messages", pwhere + ".type must be a string");
        }
        const std::string t = type->get<std::string>();
        if (t == "text") {
          auto text = part.find("text");
          if (text == part.end() || !text->is_string()) {
            return Error("messages", pwhere + ".text must be a string");
          }
          msg->add_parts()->set_text(text->get<std::string>());
        } else if (t == "image_url") {
          if (r != "user")
            return Error("messages", pwhere + ": images are accepted in user turns only");
          // Counted here too so that no more images are fetched than the request may hold.
          if (auto s = runtime::CheckImageCount(++images, options.limits, "request"); !s.ok()) {
            return Error("messages", std::string(s.message()));
          }
          auto iu = part.find("image_url");
          std::string url;
          if (iu != part.end() && iu->is_string()) {
            url = iu->get<std::string>();
          } else if (iu != part.end() && iu->is_object() && iu->contains("url") &&
                     (*iu)["url"].is_string()) {
            url = (*iu)["url"].get<std::string>();
          } else {
            return Error("messages", pwhere + ".image_url.url must be a string");
          }
          if (auto s = ImageFromUrl(url, msg->add_parts()->mutable_image()); !s.ok()) {
            return Error("messages", absl::StrCat(pwhere, ": ", s.message()));
          }
        } else if (t == "input_audio") {
          if (r != "user")
            return Error("messages", pwhere + ": audio is accepted in user turns only");
          auto ia = part.find("input_audio");
          if (ia == part.end() || !ia->is_object() || !ia->contains("data") ||
              !(*ia)["data"].is_string()) {
            return Error("messages", pwhere + ".input_audio.data must be a base64 string");
          }
          auto format = ia->find("format");
          if (format != ia->end() &&
              !(format->is_string() && format->get<std::string>() == "wav")) {
            return Error("messages", pwhere + ".input_audio.format must be \"wav\"");
          }
          std::string bytes;
          if (!absl::Base64Unescape((*ia)["data"].get<std::string>(), &bytes)) {
            return Error("messages", pwhere + ".input_audio.data is not valid base64");
          }
          msg->add_parts()->mutable_audio()->set_wav(std::move(bytes));
        } else {
          return Error("messages", absl::StrCat(pwhere, ".type '", t,
                                                "' is not supported; use text, image_url or "
                                                "input_audio"));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Logprobs(const json& body, bool chat) {
    v1::LogprobsParams* lp = call->request.mutable_logprobs();
    if (chat) {
      bool enabled = false;
      if (auto s = Bool(body, "logprobs", &enabled); !s.ok()) return s;
      std::optional<int64_t> top;
      if (auto s = Integer(body, "top_logprobs", 0, 20, &top); !s.ok()) return s;
      if (top && *top > 0 && !enabled) {
        return Error("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      }
      lp->set_enabled(enabled);
      if (top) lp->set_top_logprobs(static_cast<uint32_t>(*top));
    } else {
      std::optional<int64_t> top;  // Completions: logprobs is the number of alternatives.
      if (auto s = Integer(body, "logprobs", 0, 20, &top); !s.ok()) return s;
      if (top) {
        lp->set_enabled(true);
        lp->set_top_logprobs(static_cast<uint32_t>(*top));
      }
    }
    return absl::OkStatus();
  }
};

absl::StatusOr<json> ParseObject(absl::string_view body, OpenAiCall* call) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("the request body is not valid JSON");
  }
  if (!j.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  return j;
}

}  // namespace

static absl::StatusOr<OpenAiCall> ParseChat(absl::string_view body, const OpenAiOptions& options,
                                            OpenAiCall& call) {
  call.chat = true;
  auto j = ParseObject(body, &call);
  if (!j.ok()) return j.status();
  Parser p{options, &call};
  if (auto s = p.Common(*j); !s.ok()) return s;
  if (auto s = p.Logprobs(*j, true); !s.ok()) return s;
  if (auto s = p.Messages(*j); !s.ok()) return s;
  if (auto s = ParseToolFields(*j, &call.request, &call.error_param); !s.ok()) return s;
  if (auto s = ParseStructuredOutputFields(*j, &call.request, &call.error_param); !s.ok()) return s;
  if (auto s = ParseReasoningFields(*j, &call.request, &call.error_param); !s.ok()) return s;
  return call;
}

absl::StatusOr<OpenAiCall> ParseChatCompletion(absl::string_view body, const OpenAiOptions& options,
                                               std::string* error_param) {
  OpenAiCall call;
  auto out = ParseChat(body, options, call);
  if (!out.ok() && error_param != nullptr) *error_param = call.error_param;
  return out;
}

static absl::StatusOr<OpenAiCall> ParsePlain(absl::string_view body, const OpenAiOptions& options,
                                             OpenAiCall& call) {
  call.chat = false;
  auto j = ParseObject(body, &call);
  if (!j.ok()) return j.status();
  Parser p{options, &call};
  if (auto s = p.Common(*j); !s.ok()) return s;
  if (auto s = p.Logprobs(*j, false); !s.ok()) return s;
  auto prompt = j->find("prompt");
  if (prompt == j->end()) return p.Error("prompt", "'prompt' is required");
  if (prompt->is_string()) {
    call.request.set_prompt(prompt->get<std::string>());
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    call.request.set_prompt((*prompt)[0].get<std::string>());
  } else {
    return p.Error("prompt", "'prompt' must be a string (batched prompts are not supported)");
  }
  if (call.request.prompt().empty()) return p.Error("prompt", "'prompt' is empty");
  bool echo = false;
  if (auto s = p.Bool(*j, "echo", &echo); !s.ok()) return s;
  if (echo) return p.Error("echo", "'echo' is not supported");
  if (auto s = ParseStructuredOutputFields(*j, &call.request, &call.error_param); !s.ok()) return s;
  for (const char* chat_only :
       {"tools", "tool_choice", "chat_template_kwargs", "reasoning_effort"}) {
    auto it = j->find(chat_only);
    if (it != j->end() && !it->is_null()) {
      return p.Error(chat_only,
                     absl::StrCat("'", chat_only, "' is accepted by /v1/chat/completions only"));
    }
  }
  auto suffix = j->find("suffix");
  if (suffix != j->end() && !suffix->is_null())
    return p.Error("suffix", "'suffix' is not supported");
  return call;
}

absl::StatusOr<OpenAiCall> ParseCompletion(absl::string_view body, const OpenAiOptions& options,
                                           std::string* error_param) {
  OpenAiCall call;
  auto out = ParsePlain(body, options, call);
  if (!out.ok() && error_param != nullptr) *error_param = call.error_param;
  return out;
}

}  // namespace tessera::server
