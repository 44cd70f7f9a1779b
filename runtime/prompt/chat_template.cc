// Each function below mirrors one macro or block of runtime/prompt/templates/gemma4.jinja; comments
// quote the Jinja semantics that decide the bytes (truthiness, dictsort, `trim`, Python's str()).
#include "runtime/prompt/chat_template.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace tessera::runtime {
namespace {

using Json = nlohmann::json;

constexpr char kQuote[] = "<|\"|>";

// Python truthiness of a JSON value (None, False, 0, "", [] and {} are false).
bool Truthy(const Json* v) {
  if (v == nullptr || v->is_null()) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number_integer()) return v->get<int64_t>() != 0;
  if (v->is_number_unsigned()) return v->get<uint64_t>() != 0;
  if (v->is_number_float()) return v->get<double>() != 0.0;
  if (v->is_string()) return !v->get_ref<const std::string&>().empty();
  return !v->empty();
}

// `value['key']`: nullptr when undefined (a missing key, or `value` is not a mapping).
const Json* Get(const Json& v, const char* key) {
  if (!v.is_object()) return nullptr;
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

// Python's str.strip() whitespace (ASCII plus the separators str.isspace() accepts below 0x80).
bool IsPySpace(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

// Jinja's `trim` (Python str.strip()). Non-ASCII whitespace (U+00A0, U+2000..) is also stripped by
// Python; it is handled here for the common NBSP and ideographic space encodings.
std::string Trim(std::string_view s) {
  auto strip_front = [](std::string_view& t) {
    for (;;) {
      if (!t.empty() && IsPySpace(t.front())) {
        t.remove_prefix(1);
      } else if (t.size() >= 2 && t.substr(0, 2) == "\xC2\xA0") {
        t.remove_prefix(2);
      } else if (t.size() >= 3 && t.substr(0, 3) == "\xE3\x80\x80") {
        t.remove_prefix(3);
      } else {
        return;
      }
    }
  };
  auto strip_back = [](std::string_view& t) {
    for (;;) {
      if (!t.empty() && IsPySpace(t.back())) {
        t.remove_suffix(1);
      } else if (t.size() >= 2 && t.substr(t.size() - 2) == "\xC2\xA0") {
        t.remove_suffix(2);
      } else if (t.size() >= 3 && t.substr(t.size() - 3) == "\xE3\x80\x80") {
        t.remove_suffix(3);
      } else {
        return;
      }
    }
  };
  strip_front(s);
  strip_back(s);
  return std::string(s);
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Python's repr/str of a float: the shortest round-trip digits, fixed notation for exponents in
// [-4, 16), scientific ("1e+20") otherwise, and ".0" on integral values.
std::string PyFloat(double d) {
  if (d != d) return "nan";
  if (d == HUGE_VAL) return "inf";
  if (d == -HUGE_VAL) return "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci: [-]D[.DDD]e[+-]XX
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exp = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += absl::StrFormat("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  }
  return neg ? "-" + out : out;
}

// `{{ value }}` of a scalar, as Python's str() would print it.
std::string PyStr(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_float()) return PyFloat(v.get<double>());
  return v.dump();  // Lists and dicts print as Python reprs; only reached by malformed input.
}

// Jinja's `dictsort` (case-insensitive by key, stable).
std::vector<std::pair<std::string, const Json*>> DictSort(const Json& obj) {
  std::vector<std::pair<std::string, const Json*>> items;
  for (auto it = obj.begin(); it != obj.end(); ++it) items.emplace_back(it.key(), &it.value());
  std::stable_sort(items.begin(), items.end(),
                   [](const auto& a, const auto& b) { return Lower(a.first) < Lower(b.first); });
  return items;
}

class Renderer {
 public:
  absl::Status FormatArgument(const Json& arg, bool escape_keys, std::string* out) {
    if (++depth_ > kMaxDepth) return TooDeep();
    if (arg.is_string()) {
      absl::StrAppend(out, kQuote, arg.get<std::string>(), kQuote);
    } else if (arg.is_boolean()) {
      out->append(arg.get<bool>() ? "true" : "false");
    } else if (arg.is_object()) {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, value] : DictSort(arg)) {
        if (!first) out->push_back(',');
        first = false;
        if (escape_keys) {
          absl::StrAppend(out, kQuote, key, kQuote);
        } else {
          out->append(key);
        }
        out->push_back(':');
        absl::Status s = FormatArgument(*value, escape_keys, out);
        if (!s.ok()) return s;
      }
      out->push_back('}');
    } else if (arg.is_array()) {
      out->push_back('[');
      for (size_t i = 0; i < arg.size(); ++i) {
        absl::Status s = FormatArgument(arg[i], escape_keys, out);
        if (!s.ok()) return s;
        if (i + 1 < arg.size()) out->push_back(',');
      }
      out->push_back(']');
    } else {
      out->append(PyStr(arg));
    }
    --depth_;
    return absl::OkStatus();
  }

  // macro format_parameters(properties, required); `required` is unused by the template body.
  absl::Status FormatParameters(const Json& properties, std::string* out) {
    if (++depth_ > kMaxDepth) return TooDeep();
    if (!properties.is_object()) {
      return absl::InvalidArgumentError("tool parameter 'properties' must be an object");
    }
    static const char* const kStandardKeys[] = {"description", "type", "properties", "required",
                                                "nullable"};
    bool found_first = false;
    for (const auto& [key, value_ptr] : DictSort(properties)) {
      const Json& value = *value_ptr;
      if (std::find(std::begin(kStandardKeys), std::end(kStandardKeys), key) !=
          std::end(kStandardKeys)) {
        continue;
      }
      bool add_comma = false;
      if (found_first) out->push_back(',');
      found_first = true;
      absl::StrAppend(out, key, ":{");
      if (const Json* d = Get(value, "description"); Truthy(d)) {
        absl::StrAppend(out, "description:", kQuote, PyStr(*d), kQuote);
        add_comma = true;
      }
      if (Truthy(Get(value, "nullable"))) {
        if (add_comma) out->push_back(',');
        add_comma = true;
        out->append("nullable:true");
      }
      // value['type'] if value['type'] is string else value['type'][0]
      const Json* type = Get(value, "type");
      std::string value_type;
      if (type != nullptr && type->is_string()) {
        value_type = type->get<std::string>();
      } else if (type != nullptr && type->is_array() && !type->empty()) {
        value_type = PyStr((*type)[0]);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "tool parameter '", key, "' has no 'type' (a string or a non-empty list)"));
      }
      const std::string upper_type = Upper(value_type);
      if (upper_type == "STRING") {
        if (const Json* e = Get(value, "enum"); Truthy(e)) {
          if (add_comma) out->push_back(',');
          add_comma = true;
          out->append("enum:");
          absl::Status s = FormatArgument(*e, /*escape_keys=*/true, out);
          if (!s.ok()) return s;
        }
      } else if (upper_type == "OBJECT") {
        out->append(",properties:{");
        const Json* required = Get(value, "required");
        if (const Json* p = Get(value, "properties"); p != nullptr && p->is_object()) {
          absl::Status s = FormatParameters(*p, out);
          if (!s.ok()) return s;
        } else if (value.is_object()) {
          absl::Status s = FormatParameters(value, out);
          if (!s.ok()) return s;
        }
        out->push_back('}');
        if (Truthy(required)) {
          out->append(",required:[");
          AppendQuotedList(*required, out);
          out->push_back(']');
        }
      } else if (upper_type == "ARRAY") {
        const Json* items = Get(value, "items");
        if (items != nullptr && items->is_object() && !items->empty()) {
          out->append(",items:{");
          bool items_first = false;
          for (const auto& [item_key, item_value] : DictSort(*items)) {
            if (item_value->is_null()) continue;
            if (items_first) out->push_back(',');
            items_first = true;
            if (item_key == "properties") {
              out->append("properties:{");
              if (item_value->is_object()) {
                absl::Status s = FormatParameters(*item_value, out);
                if (!s.ok()) return s;
              }
              out->push_back('}');
            } else if (item_key == "required") {
              out->append("required:[");
              AppendQuotedList(*item_value, out);
              out->push_back(']');
            } else if (item_key == "type") {
              out->append("type:");
              Json upper;
              if (item_value->is_string()) {
                upper = Upper(item_value->get<std::string>());
              } else if (item_value->is_array()) {
                upper = Json::array();
                for (const Json& t : *item_value) upper.push_back(Upper(PyStr(t)));
              } else {
                return absl::InvalidArgumentError("tool parameter items 'type' must be a string");
              }
              absl::Status s = FormatArgument(upper, true, out);
              if (!s.ok()) return s;
            } else {
              absl::StrAppend(out, item_key, ":");
              absl::Status s = FormatArgument(*item_value, true, out);
              if (!s.ok()) return s;
            }
          }
          out->push_back('}');
        }
      }
      if (add_comma) out->push_back(',');
      absl::StrAppend(out, "type:", kQuote, upper_type, kQuote, "}");
    }
    --depth_;
    return absl::OkStatus();
  }

  // macro format_function_declaration(tool_data)
  absl::Status FormatFunctionDeclaration(const Json& tool, std::string* out) {
    const Json* function = Get(tool, "function");
    const Json* name = function ? Get(*function, "name") : nullptr;
    if (name == nullptr || !name->is_string()) {
      return absl::InvalidArgumentError("each tool needs function.name (a string)");
    }
    const Json* description = Get(*function, "description");
    absl::StrAppend(out, "declaration:", name->get<std::string>(), "{description:", kQuote,
                    description ? PyStr(*description) : "", kQuote);
    if (const Json* params = Get(*function, "parameters"); Truthy(params)) {
      out->append(",parameters:{");
      if (const Json* props = Get(*params, "properties"); Truthy(props)) {
        out->append("properties:{");
        absl::Status s = FormatParameters(*props, out);
        if (!s.ok()) return s;
        out->append("},");
      }
      if (const Json* required = Get(*params, "required"); Truthy(required)) {
        out->append("required:[");
        AppendQuotedList(*required, out);
        out->append("],");
      }
      if (const Json* type = Get(*params, "type"); Truthy(type)) {
        absl::StrAppend(out, "type:", kQuote, Upper(PyStr(*type)), kQuote, "}");
      }
    }
    if (const Json* response = Get(*function, "response"); response != nullptr) {
      out->append(",response:{");
      if (const Json* d = Get(*response, "description"); Truthy(d)) {
        absl::StrAppend(out, "description:", kQuote, PyStr(*d), kQuote, ",");
      }
      const Json* type = Get(*response, "type");
      if (type != nullptr && Upper(PyStr(*type)) == "OBJECT") {
        absl::StrAppend(out, "type:", kQuote, "OBJECT", kQuote, "}");
      }
    }
    out->push_back('}');
    return absl::OkStatus();
  }

 private:
  // Nesting bound for tool schemas and arguments, so hostile JSON cannot exhaust the stack.
  static constexpr int kMaxDepth = 64;

  absl::Status TooDeep() const {
    return absl::InvalidArgumentError(
        absl::StrCat("tool declaration or arguments nest deeper than ", kMaxDepth, " levels"));
  }

  // `{%- for item in list -%}<|"|>{{- item -}}<|"|>{%- if not loop.last %},{% endif -%}`
  static void AppendQuotedList(const Json& list, std::string* out) {
    if (!list.is_array()) {
      absl::StrAppend(out, kQuote, PyStr(list), kQuote);  // Jinja would iterate a string's chars.
      return;
    }
    for (size_t i = 0; i < list.size(); ++i) {
      absl::StrAppend(out, kQuote, PyStr(list[i]), kQuote);
      if (i + 1 < list.size()) out->push_back(',');
    }
  }

  int depth_ = 0;
};

// macro strip_thinking(text)
std::string StripThinking(std::string_view text) {
  std::string result;
  size_t pos = 0;
  for (;;) {
    size_t end = text.find("<channel|>", pos);
    std::string_view part =
        text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    size_t open = part.find("<|channel>");
    result.append(part.substr(0, open));
    if (end == std::string_view::npos) break;
    pos = end + std::string_view("<channel|>").size();
  }
  return Trim(result);
}

}  // namespace

std::string Gemma4TurnStart(std::string_view role) {
  const std::string_view written = role == "assistant" ? std::string_view("model") : role;
  return absl::StrCat("<|turn>", absl::string_view(written.data(), written.size()), "\n");
}

std::string Gemma4TurnEnd() { return "<turn|>\n"; }

std::string Gemma4ContentText(std::string_view role, std::string_view text) {
  return role == "model" || role == "assistant" ? StripThinking(text) : Trim(text);
}

std::string Gemma4MediaItem(std::string_view type) {
  if (type == "image") return absl::StrCat("\n\n", kImagePlaceholder, "\n\n");
  if (type == "audio") return kAudioPlaceholder;
  if (type == "video") return absl::StrCat("\n\n", kVideoPlaceholder, "\n\n");
  return "";
}

std::string Gemma4SystemTurnStart(bool enable_thinking) {
  return enable_thinking ? "<|turn>system\n<|think|>" : "<|turn>system\n";
}

std::string Gemma4GenerationPrompt(bool enable_thinking, bool after_tool_response) {
  std::string out = after_tool_response ? "" : "<|turn>model\n";
  if (!enable_thinking) out.append("<|channel>thought\n<channel|>");
  return out;
}

absl::StatusOr<std::string> RenderGemma4ChatTemplate(const ChatTemplateInput& input) {
  const Json& messages = input.messages;
  if (!messages.is_array() || messages.empty()) {
    return absl::InvalidArgumentError("a conversation needs at least one message");
  }
  const Json& tools = input.tools;
  if (!tools.is_null() && !tools.is_array()) {
    return absl::InvalidArgumentError("tools must be a list of function declarations");
  }
  for (const Json& m : messages) {
    const Json* role = Get(m, "role");
    if (role == nullptr || !role->is_string()) {
      return absl::InvalidArgumentError("every message needs a role (a string)");
    }
  }
  Renderer renderer;
  std::string out = input.bos_token;
  std::string prev_message_type;  // ns.prev_message_type; "" is None.
  const std::string first_role = messages[0]["role"].get<std::string>();
  const bool first_is_system = first_role == "system" || first_role == "developer";
  size_t first = 0;
  if (input.enable_thinking || Truthy(&tools) || first_is_system) {
    out.append(Gemma4SystemTurnStart(input.enable_thinking));
    if (input.enable_thinking) prev_message_type = "think";
    if (first_is_system) {
      const Json* content = Get(messages[0], "content");
      if (content == nullptr || !content->is_string()) {
        return absl::InvalidArgumentError("the system message's content must be text");
      }
      out.append(Trim(content->get<std::string>()));
      first = 1;
    }
    if (Truthy(&tools)) {
      for (const Json& tool : tools) {
        std::string declaration;
        absl::Status s = renderer.FormatFunctionDeclaration(tool, &declaration);
        if (!s.ok()) return s;
        absl::StrAppend(&out, "<|tool>", Trim(declaration), "<tool|>");
      }
      prev_message_type = "tool";
    }
    out.append(Gemma4TurnEnd());
  }

  for (size_t i = first; i < messages.size(); ++i) {
    const Json& message = messages[i];
    prev_message_type.clear();
    std::string role = message["role"].get<std::string>();
    if (role == "assistant") role = "model";
    out.append(Gemma4TurnStart(role));

    if (const Json* calls = Get(message, "tool_calls"); Truthy(calls)) {
      if (!calls->is_array()) return absl::InvalidArgumentError("tool_calls must be a list");
      for (const Json& call : *calls) {
        const Json* function = Get(call, "function");
        const Json* name = function ? Get(*function, "name") : nullptr;
        if (name == nullptr || !name->is_string()) {
          return absl::InvalidArgumentError("each tool call needs function.name (a string)");
        }
        absl::StrAppend(&out, "<|tool_call>call:", name->get<std::string>(), "{");
        const Json* args = Get(*function, "arguments");
        if (args != nullptr && args->is_object()) {
          bool found_first = false;
          for (const auto& [key, value] : DictSort(*args)) {
            if (found_first) out.push_back(',');
            found_first = true;
            absl::StrAppend(&out, key, ":");
            absl::Status s = renderer.FormatArgument(*value, /*escape_keys=*/false, &out);
            if (!s.ok()) return s;
          }
        } else if (args != nullptr && args->is_string()) {
          out.append(args->get<std::string>());
        }
        out.append("}<tool_call|>");
      }
      prev_message_type = "tool_call";
    }

    const Json* responses = Get(message, "tool_responses");
    if (Truthy(responses)) {
      if (!responses->is_array())
        return absl::InvalidArgumentError("tool_responses must be a list");
      for (const Json& response : *responses) {
        out.append("<|tool_response>");
        const Json* name = Get(response, "name");
        if (name != nullptr && !name->is_string()) {
          return absl::InvalidArgumentError("a tool response's name must be a string");
        }
        const std::string name_text = name ? name->get<std::string>() : "unknown";
        const Json* value = Get(response, "response");
        if (value != nullptr && value->is_object()) {
          absl::StrAppend(&out, "response:", name_text, "{");
          auto items = DictSort(*value);
          for (size_t k = 0; k < items.size(); ++k) {
            absl::StrAppend(&out, items[k].first, ":");
            absl::Status s = renderer.FormatArgument(*items[k].second, false, &out);
            if (!s.ok()) return s;
            if (k + 1 < items.size()) out.push_back(',');
          }
          out.push_back('}');
        } else {
          absl::StrAppend(&out, "response:", name_text, "{value:");
          absl::Status s = renderer.FormatArgument(value ? *value : Json(), false, &out);
          if (!s.ok()) return s;
          out.push_back('}');
        }
        out.append("<tool_response|>");
      }
      prev_message_type = "tool_response";
    }

    const Json* content = Get(message, "content");
    if (content != nullptr && content->is_string()) {
      out.append(Gemma4ContentText(role, content->get_ref<const std::string&>()));
    } else if (content != nullptr && content->is_array()) {
      for (const Json& item : *content) {
        const Json* type = Get(item, "type");
        const std::string type_text = type && type->is_string() ? type->get<std::string>() : "";
        if (type_text == "text") {
          const Json* text = Get(item, "text");
          const std::string t = text && text->is_string() ? text->get<std::string>() : "";
          out.append(Gemma4ContentText(role, t));
        } else if (type_text == "image" || type_text == "audio" || type_text == "video") {
          out.append(Gemma4MediaItem(type_text));
          prev_message_type = type_text;
        }
      }
    }
    if (!(Truthy(responses) && !Truthy(content))) out.append(Gemma4TurnEnd());
  }

  if (input.add_generation_prompt) {
    out.append(Gemma4GenerationPrompt(input.enable_thinking, prev_message_type == "tool_response"));
  }
  return out;
}

uint64_t ChatTemplateFingerprint(std::string_view jinja_source) {
  std::string normalized;
  normalized.reserve(jinja_source.size());
  for (size_t i = 0; i < jinja_source.size(); ++i) {
    if (jinja_source[i] == '\r' && i + 1 < jinja_source.size() && jinja_source[i + 1] == '\n') {
      continue;
    }
    normalized.push_back(jinja_source[i]);
  }
  while (!normalized.empty() && IsPySpace(normalized.back())) normalized.pop_back();
  return XXH3_64bits(normalized.data(), normalized.size());
}

absl::Status CheckChatTemplateSupported(std::string_view jinja_source) {
  const uint64_t fingerprint = ChatTemplateFingerprint(jinja_source);
  if (fingerprint == kGemma4ChatTemplateFingerprint) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "the checkpoint's chat template (fingerprint %016x) is not the Gemma 4 template Tessera "
      "renders (fingerprint %016x); refusing to render its conversations with a different "
      "template. Use runtime/prompt/templates/gemma4.jinja's content or add support for this "
      "template",
      fingerprint, kGemma4ChatTemplateFingerprint));
}

}  // namespace tessera::runtime
