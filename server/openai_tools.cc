#include "server/openai_tools.h"

#include <optional>
#include <set>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tessera::server {
namespace {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

absl::Status Error(std::string* param, const std::string& field, const std::string& message) {
  *param = field;
  return absl::InvalidArgumentError(message);
}

const json* Find(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// A JSON Schema given as an object (OpenAI) or as JSON text (vLLM accepts both).
absl::StatusOr<std::string> SchemaText(const json& schema) {
  if (schema.is_object() || schema.is_boolean()) return Dump(schema);
  if (schema.is_string()) {
    json parsed = json::parse(schema.get<std::string>(), nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_boolean())) {
      return Dump(parsed);
    }
  }
  return absl::InvalidArgumentError("must be a JSON Schema (an object)");
}

}  // namespace

absl::Status ParseToolFields(const json& body, v1::GenerateRequest* request, std::string* param) {
  std::set<std::string> names;
  if (const json* tools = Find(body, "tools")) {
    if (!tools->is_array()) return Error(param, "tools", "'tools' must be an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      const std::string where = absl::StrCat("tools[", i, "]");
      if (!t.is_object()) return Error(param, "tools", where + " must be an object");
      const json* type = Find(t, "type");
      if (type == nullptr || !type->is_string() || *type != "function") {
        return Error(param, "tools",
                     where + ".type must be \"function\" (the only kind of tool this server runs)");
      }
      const json* function = Find(t, "function");
      if (function == nullptr || !function->is_object()) {
        return Error(param, "tools", where + ".function must be an object");
      }
      const json* name = Find(*function, "name");
      if (name == nullptr || !name->is_string() || name->get<std::string>().empty()) {
        return Error(param, "tools", where + ".function.name must be a non-empty string");
      }
      v1::Tool* tool = request->add_tools();
      tool->set_name(name->get<std::string>());
      if (!names.insert(tool->name()).second) {
        return Error(param, "tools",
                     absl::StrCat(where, ": the function name '", tool->name(), "' is repeated"));
      }
      if (const json* d = Find(*function, "description")) {
        if (!d->is_string()) {
          return Error(param, "tools", where + ".function.description must be a string");
        }
        tool->set_description(d->get<std::string>());
      }
      if (const json* p = Find(*function, "parameters")) {
        if (!p->is_object()) {
          return Error(param, "tools", where + ".function.parameters must be a JSON Schema object");
        }
        tool->set_parameters(Dump(*p));
      }
      if (const json* strict = Find(*function, "strict"); strict && !strict->is_boolean()) {
        return Error(param, "tools", where + ".function.strict must be a boolean");
      }
    }
  }
  if (const json* choice = Find(body, "tool_choice")) {
    v1::ToolChoice* out = request->mutable_tool_choice();
    if (choice->is_string()) {
      const std::string mode = choice->get<std::string>();
      if (mode == "none") {
        out->set_mode(v1::ToolChoice::TOOL_CHOICE_NONE);
      } else if (mode == "auto") {
        out->set_mode(v1::ToolChoice::TOOL_CHOICE_AUTO);
      } else if (mode == "required") {
        out->set_mode(v1::ToolChoice::TOOL_CHOICE_REQUIRED);
      } else {
        return Error(param, "tool_choice",
                     absl::StrCat("'tool_choice' is '", mode,
                                  "'; use none, auto, required or {\"type\": \"function\", "
                                  "\"function\": {\"name\": ...}}"));
      }
    } else if (choice->is_object()) {
      const json* type = Find(*choice, "type");
      const json* function = Find(*choice, "function");
      const json* name = function && function->is_object() ? Find(*function, "name") : nullptr;
      if (type == nullptr || *type != "function" || name == nullptr || !name->is_string()) {
        return Error(param, "tool_choice",
                     "'tool_choice' as an object must be {\"type\": \"function\", \"function\": "
                     "{\"name\": ...}}");
      }
      out->set_function(name->get<std::string>());
      if (!names.count(out->function())) {
        return Error(param, "tool_choice",
                     absl::StrCat("'tool_choice' names the function '", out->function(),
                                  "', which is not among the request's tools"));
      }
    } else {
      return Error(param, "tool_choice", "'tool_choice' must be a string or an object");
    }
    const bool forced = out->choice_case() == v1::ToolChoice::kFunction ||
                        out->mode() == v1::ToolChoice::TOOL_CHOICE_REQUIRED;
    if (forced && request->tools_size() == 0) {
      return Error(param, "tool_choice", "'tool_choice' requires a call but 'tools' is empty");
    }
  }
  if (const json* parallel = Find(body, "parallel_tool_calls")) {
    if (!parallel->is_boolean()) {
      return Error(param, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    }
    request->set_parallel_tool_calls(parallel->get<bool>());
  }
  return absl::OkStatus();
}

absl::Status ParseStructuredOutputFields(const json& body, v1::GenerateRequest* request,
                                         std::string* param) {
  v1::ResponseFormat* out = request->mutable_response_format();
  std::string given;  // The field that set the format (only one may).
  auto set = [&](const std::string& field) -> absl::Status {
    if (!given.empty()) {
      return Error(param, field,
                   absl::StrCat("'", field, "' and '", given,
                                "' both constrain the output; give one of them"));
    }
    given = field;
    return absl::OkStatus();
  };
  if (const json* rf = Find(body, "response_format")) {
    const json* type = rf->is_object() ? Find(*rf, "type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      return Error(param, "response_format", "'response_format' must be an object with a type");
    }
    const std::string t = type->get<std::string>();
    if (t == "json_object") {
      if (auto s = set("response_format"); !s.ok()) return s;
      out->set_json_object(true);
    } else if (t == "json_schema") {
      const json* js = Find(*rf, "json_schema");
      const json* schema = js && js->is_object() ? Find(*js, "schema") : nullptr;
      if (schema == nullptr) {
        return Error(param, "response_format",
                     "'response_format.json_schema.schema' is required for type json_schema");
      }
      absl::StatusOr<std::string> text = SchemaText(*schema);
      if (!text.ok()) {
        return Error(
            param, "response_format",
            absl::StrCat("'response_format.json_schema.schema' ", text.status().message()));
      }
      if (const json* strict = Find(*js, "strict"); strict && !strict->is_boolean()) {
        return Error(param, "response_format",
                     "'response_format.json_schema.strict' must be a boolean");
      }
      if (auto s = set("response_format"); !s.ok()) return s;
      out->set_json_schema(*text);
    } else if (t != "text") {
      return Error(param, "response_format",
                   absl::StrCat("'response_format.type' is '", t,
                                "'; supported: text, json_object, json_schema"));
    }
  }
  if (const json* so = Find(body, "structured_outputs")) {
    if (!so->is_object()) {
      return Error(param, "structured_outputs", "'structured_outputs' must be an object");
    }
    for (auto it = so->begin(); it != so->end(); ++it) {
      const std::string key = it.key();
      const std::string field = "structured_outputs." + key;
      const json& v = it.value();
      if (v.is_null()) continue;
      if (key == "json") {
        absl::StatusOr<std::string> text = SchemaText(v);
        if (!text.ok()) {
          return Error(param, field, absl::StrCat("'", field, "' ", text.status().message()));
        }
        if (auto s = set(field); !s.ok()) return s;
        out->set_json_schema(*text);
      } else if (key == "json_object") {
        if (!v.is_boolean()) return Error(param, field, "'" + field + "' must be a boolean");
        if (!v.get<bool>()) continue;
        if (auto s = set(field); !s.ok()) return s;
        out->set_json_object(true);
      } else if (key == "regex" || key == "grammar") {
        if (!v.is_string() || v.get<std::string>().empty()) {
          return Error(param, field, "'" + field + "' must be a non-empty string");
        }
        if (auto s = set(field); !s.ok()) return s;
        key == "regex" ? out->set_regex(v.get<std::string>())
                       : out->set_grammar(v.get<std::string>());
      } else if (key == "choice") {
        if (!v.is_array() || v.empty()) {
          return Error(param, field, "'" + field + "' must be a non-empty array of strings");
        }
        if (auto s = set(field); !s.ok()) return s;
        for (const json& c : v) {
          if (!c.is_string()) {
            return Error(param, field, "'" + field + "' must be a non-empty array of strings");
          }
          out->mutable_choice()->add_values(c.get<std::string>());
        }
      } else {
        return Error(param, field,
                     absl::StrCat("'", field,
                                  "' is not supported; use json, json_object, regex, choice or "
                                  "grammar"));
      }
    }
  }
  if (const json* g = Find(body, "grammar")) {  // llama-server: GBNF text.
    if (!g->is_string() || g->get<std::string>().empty()) {
      return Error(param, "grammar", "'grammar' must be a GBNF grammar (a non-empty string)");
    }
    if (auto s = set("grammar"); !s.ok()) return s;
    out->set_grammar(g->get<std::string>());
  }
  if (const json* js = Find(body, "json_schema")) {  // llama-server: a schema object.
    absl::StatusOr<std::string> text = SchemaText(*js);
    if (!text.ok()) {
      return Error(param, "json_schema", absl::StrCat("'json_schema' ", text.status().message()));
    }
    if (auto s = set("json_schema"); !s.ok()) return s;
    out->set_json_schema(*text);
  }
  if (given.empty()) {
    request->clear_response_format();
    return absl::OkStatus();
  }
  if (request->tools_size() > 0) {
    const v1::ToolChoice& tc = request->tool_choice();
    const bool none =
        tc.choice_case() == v1::ToolChoice::kMode && tc.mode() == v1::ToolChoice::TOOL_CHOICE_NONE;
    if (!none) {
      return Error(param, given,
                   absl::StrCat("'", given,
                                "' constrains the reply, so the model could not call the request's "
                                "tools; send tool_choice \"none\" with it, or no format"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseReasoningFields(const json& body, v1::GenerateRequest* request,
                                  std::string* param) {
  std::optional<bool> from_kwargs, from_effort;
  if (const json* kwargs = Find(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) {
      return Error(param, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    }
    for (auto it = kwargs->begin(); it != kwargs->end(); ++it) {
      const std::string field = "chat_template_kwargs." + it.key();
      if (it.key() != "enable_thinking") {
        return Error(param, field,
                     absl::StrCat("'", field,
                                  "' is not supported; the Gemma 4 template takes "
                                  "enable_thinking"));
      }
      if (it->is_null()) continue;
      if (!it->is_boolean()) return Error(param, field, "'" + field + "' must be a boolean");
      from_kwargs = it->get<bool>();
    }
  }
  if (const json* effort = Find(body, "reasoning_effort")) {
    const std::string e = effort->is_string() ? effort->get<std::string>() : "";
    if (e == "none" || e == "minimal") {
      from_effort = false;
    } else if (e == "low" || e == "medium" || e == "high") {
      from_effort = true;
    } else {
      return Error(param, "reasoning_effort",
                   "'reasoning_effort' must be none, minimal, low, medium or high");
    }
  }
  if (from_kwargs && from_effort && *from_kwargs != *from_effort) {
    return Error(param, "reasoning_effort",
                 "'reasoning_effort' and 'chat_template_kwargs.enable_thinking' disagree");
  }
  if (from_kwargs || from_effort) request->set_enable_thinking(from_kwargs.value_or(*from_effort));
  return absl::OkStatus();
}

absl::Status ParseMessageToolFields(const json& message, const std::string& role,
                                    const std::string& where, v1::Message* out,
                                    std::string* param) {
  if (const json* calls = Find(message, "tool_calls")) {
    if (role != "model") {
      return Error(param, "messages", where + ": tool_calls are accepted in assistant turns only");
    }
    if (!calls->is_array()) return Error(param, "messages", where + ".tool_calls must be an array");
    for (size_t k = 0; k < calls->size(); ++k) {
      const json& c = (*calls)[k];
      const std::string cw = absl::StrCat(where, ".tool_calls[", k, "]");
      const json* function = c.is_object() ? Find(c, "function") : nullptr;
      const json* name = function && function->is_object() ? Find(*function, "name") : nullptr;
      if (name == nullptr || !name->is_string()) {
        return Error(param, "messages", cw + ".function.name must be a string");
      }
      v1::ToolCall* call = out->add_tool_calls();
      call->set_name(name->get<std::string>());
      if (const json* id = Find(c, "id")) {
        if (!id->is_string()) return Error(param, "messages", cw + ".id must be a string");
        call->set_id(id->get<std::string>());
      }
      if (const json* args = Find(*function, "arguments")) {
        // A JSON object as text (OpenAI); an object itself is accepted too.
        if (args->is_string()) {
          call->set_arguments(args->get<std::string>());
        } else if (args->is_object()) {
          call->set_arguments(Dump(*args));
        } else {
          return Error(param, "messages", cw + ".function.arguments must be a JSON string");
        }
      }
    }
  }
  if (const json* id = Find(message, "tool_call_id")) {
    if (role != "tool") {
      return Error(param, "messages", where + ": tool_call_id is accepted in tool turns only");
    }
    if (!id->is_string()) return Error(param, "messages", where + ".tool_call_id must be a string");
    out->set_tool_call_id(id->get<std::string>());
  }
  return absl::OkStatus();
}

}  // namespace tessera::server
