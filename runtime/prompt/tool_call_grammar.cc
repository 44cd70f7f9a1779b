#include "runtime/prompt/tool_call_grammar.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/prompt/tool_calls.h"
#include "runtime/structured/regex_parser.h"
#include "runtime/structured/schema_patterns.h"

namespace tessera::runtime {
namespace {

using Json = nlohmann::json;
using structured::ExprPtr;

absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Jinja's dictsort as the template renderer applies it (chat_template.cc): the object's keys
// case-insensitively, stable.
std::vector<std::string> DictSortedKeys(const Json& object) {
  std::vector<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
  std::stable_sort(keys.begin(), keys.end(),
                   [](const std::string& a, const std::string& b) { return Lower(a) < Lower(b); });
  return keys;
}

// A key the parser reads back when written bare (tool_calls.cc: it ends at ':', may not hold
// structure characters, and is trimmed).
bool CanBeBare(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (c == ':' || c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == '\n' ||
        c == '\t' || c == '\r') {
      return false;
    }
  }
  return key.front() != ' ' && key.back() != ' ' && key.find(kGemmaQuote) == std::string::npos;
}

// Annotations: no effect on what is valid.
const std::set<std::string, std::less<>>& IgnoredKeywords() {
  static const auto* const kSet = new std::set<std::string, std::less<>>{
      "description", "title",      "default",  "examples",  "$schema", "$id",
      "$comment",    "deprecated", "readOnly", "writeOnly", "$defs",   "definitions"};
  return *kSet;
}

const std::set<std::string, std::less<>>& EnforcedKeywords() {
  static const auto* const kSet = new std::set<std::string, std::less<>>{"type",
                                                                         "enum",
                                                                         "const",
                                                                         "anyOf",
                                                                         "properties",
                                                                         "required",
                                                                         "items",
                                                                         "minItems",
                                                                         "maxItems",
                                                                         "minLength",
                                                                         "maxLength",
                                                                         "additionalProperties",
                                                                         "nullable",
                                                                         "$ref",
                                                                         "pattern",
                                                                         "format",
                                                                         "minimum",
                                                                         "maximum",
                                                                         "exclusiveMinimum",
                                                                         "exclusiveMaximum"};
  return *kSet;
}

class Builder {
 public:
  Builder(structured::Grammar* grammar, const structured::Vocabulary& vocabulary)
      : g_(grammar), v_(vocabulary) {}

  // A marker: its special token when the vocabulary has one, else its bytes.
  ExprPtr Marker(std::string_view text) {
    if (std::optional<int32_t> id = v_.ExcludedTokenId(text)) {
      return structured::SymbolsExpr(structured::SymbolSet::Single(g_->TokenSymbol(*id)));
    }
    return structured::Literal(text);
  }

  absl::StatusOr<ExprPtr> Call(const std::string& name, const Json* parameters) {
    function_ = name;
    root_ = parameters;
    ExprPtr args;
    if (parameters == nullptr || parameters->is_null() ||
        (parameters->is_object() && parameters->empty())) {
      args = structured::Literal("{}");  // No parameters: the template's call:NAME{}.
    } else {
      absl::StatusOr<ExprPtr> object = Object(*parameters, "");
      if (!object.ok()) return object.status();
      args = *object;
    }
    return structured::Sequence({Marker(kToolCallBegin), structured::Literal("call:"),
                                 structured::Literal(name), args, Marker(kToolCallEnd)});
  }

 private:
  absl::Status Refuse(std::string_view pointer, std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "tool '", function_, "': parameters", pointer.empty() ? "" : " at ", Av(pointer), ": ",
        Av(what), " (a forced tool call enforces the schema with a grammar; see docs/serving.md)"));
  }

  absl::Status CheckKeywords(const Json& schema, const std::string& pointer) const {
    if (!schema.is_object()) return Refuse(pointer, "a schema must be an object");
    for (auto it = schema.begin(); it != schema.end(); ++it) {
      if (!EnforcedKeywords().count(it.key()) && !IgnoredKeywords().count(it.key())) {
        return Refuse(pointer, absl::StrCat("the keyword '", it.key(), "' is not supported"));
      }
    }
    return absl::OkStatus();
  }

  // The value `schema` allows, as format_argument writes it.
  absl::StatusOr<ExprPtr> Value(const Json& schema, const std::string& pointer) {
    if (schema.is_boolean()) {
      if (schema.get<bool>()) return GenericValue();
      return Refuse(pointer, "the schema 'false' allows no value");
    }
    if (absl::Status s = CheckKeywords(schema, pointer); !s.ok()) return s;
    if (auto ref = schema.find("$ref"); ref != schema.end()) return Ref(*ref, pointer);
    if (auto any_of = schema.find("anyOf"); any_of != schema.end()) {
      if (!any_of->is_array() || any_of->empty()) {
        return Refuse(pointer, "'anyOf' must be a non-empty array");
      }
      std::vector<ExprPtr> choices;
      for (size_t i = 0; i < any_of->size(); ++i) {
        absl::StatusOr<ExprPtr> c = Value((*any_of)[i], absl::StrCat(pointer, "/anyOf/", i));
        if (!c.ok()) return c.status();
        choices.push_back(*c);
      }
      return structured::Choice(std::move(choices));
    }
    if (auto e = schema.find("enum"); e != schema.end()) {
      if (!e->is_array() || e->empty()) return Refuse(pointer, "'enum' must be a non-empty array");
      std::vector<ExprPtr> choices;
      for (const Json& value : *e) {
        absl::StatusOr<ExprPtr> c = Constant(value, pointer + "/enum");
        if (!c.ok()) return c.status();
        choices.push_back(*c);
      }
      return structured::Choice(std::move(choices));
    }
    if (auto c = schema.find("const"); c != schema.end()) return Constant(*c, pointer + "/const");

    std::vector<std::string> types;
    if (auto t = schema.find("type"); t == schema.end()) {
      // No type: the keywords present say which (their constraints apply to those types only, and
      // other types would be unconstrained; generating the constrained ones stays valid).
      auto any = [&](std::initializer_list<const char*> keys) {
        for (const char* k : keys) {
          if (schema.contains(k)) return true;
        }
        return false;
      };
      if (any({"properties", "required", "additionalProperties"})) types.push_back("object");
      if (any({"items", "minItems", "maxItems"})) types.push_back("array");
      if (any({"pattern", "format", "minLength", "maxLength"})) types.push_back("string");
      if (any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) {
        types.push_back("number");
      }
      if (types.empty()) return GenericValue();
    } else if (t->is_string()) {
      types = {t->get<std::string>()};
    } else if (t->is_array() && !t->empty()) {
      for (const Json& one : *t) {
        if (!one.is_string()) return Refuse(pointer, "'type' must hold strings");
        types.push_back(one.get<std::string>());
      }
    } else {
      return Refuse(pointer, "'type' must be a string or a non-empty array");
    }
    if (schema.value("nullable", false)) types.push_back("null");

    std::vector<ExprPtr> choices;
    for (const std::string& type : types) {
      absl::StatusOr<ExprPtr> c;
      if (type == "string") {
        c = String(schema, pointer);
      } else if (type == "integer") {
        c = BoundedNumber(schema, pointer, /*integer=*/true);
      } else if (type == "number") {
        c = BoundedNumber(schema, pointer, /*integer=*/false);
      } else if (type == "boolean") {
        c = structured::Choice({structured::Literal("true"), structured::Literal("false")});
      } else if (type == "null") {
        c = structured::Literal("None");
      } else if (type == "object") {
        c = Object(schema, pointer);
      } else if (type == "array") {
        c = Array(schema, pointer);
      } else {
        return Refuse(pointer, absl::StrCat("the type '", type, "' is not a JSON Schema type"));
      }
      if (!c.ok()) return c.status();
      choices.push_back(*c);
    }
    return choices.size() == 1 ? choices[0] : structured::Choice(std::move(choices));
  }

  // format_argument of a constant: strings quoted verbatim, None for null, integers as written.
  absl::StatusOr<ExprPtr> Constant(const Json& value, const std::string& pointer) {
    if (value.is_string()) {
      const std::string& s = value.get_ref<const std::string&>();
      if (s.find(kGemmaQuote) != std::string::npos) {
        return Refuse(pointer, "a constant string containing <|\"|> cannot be written");
      }
      return structured::Sequence(
          {Marker(kGemmaQuote), structured::Literal(s), Marker(kGemmaQuote)});
    }
    if (value.is_boolean()) return structured::Literal(value.get<bool>() ? "true" : "false");
    if (value.is_null()) return structured::Literal("None");
    if (value.is_number_integer()) return structured::Literal(value.dump());
    return Refuse(pointer, "constants must be strings, integers, booleans or null");
  }

  absl::StatusOr<ExprPtr> Ref(const Json& ref, const std::string& pointer) {
    if (!ref.is_string()) return Refuse(pointer, "'$ref' must be a string");
    const std::string target = ref.get<std::string>();
    if (auto it = ref_rules_.find(target); it != ref_rules_.end()) {
      return structured::RuleRef(it->second);
    }
    const Json* schema = nullptr;
    for (const char* defs : {"#/$defs/", "#/definitions/"}) {
      const std::string prefix = defs;
      if (target.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string name = target.substr(prefix.size());
      if (root_ == nullptr || !root_->is_object()) break;
      auto container = root_->find(prefix.substr(2, prefix.size() - 3));
      if (container == root_->end() || !container->is_object()) continue;
      if (auto entry = container->find(name); entry != container->end()) schema = &*entry;
    }
    if (schema == nullptr) {
      return Refuse(pointer,
                    absl::StrCat("'$ref' ", target, " must name an entry of $defs or definitions"));
    }
    const int rule = g_->AddRule(absl::StrCat(function_, ":", target));
    ref_rules_[target] = rule;
    absl::StatusOr<ExprPtr> body = Value(*schema, target.substr(1));
    if (!body.ok()) return body.status();
    g_->rule_bodies[rule] = *body;
    return structured::RuleRef(rule);
  }

  // {key:value,...}: declared properties in dictsort order, the required ones always, as a graph
  // whose node (i, e) means "properties before i decided, e = something written" (linear size).
  absl::StatusOr<ExprPtr> Object(const Json& schema, const std::string& pointer) {
    if (absl::Status s = CheckKeywords(schema, pointer); !s.ok()) return s;
    if (auto t = schema.find("type"); t != schema.end() && !(t->is_string() && *t == "object")) {
      if (!(t->is_array() && std::find(t->begin(), t->end(), Json("object")) != t->end())) {
        return Refuse(pointer, "the function's parameters must be an object schema");
      }
    }
    const Json empty = Json::object();
    const Json* properties = &empty;
    if (auto p = schema.find("properties"); p != schema.end()) {
      if (!p->is_object()) return Refuse(pointer, "'properties' must be an object");
      properties = &*p;
    }
    std::set<std::string> required;
    if (auto r = schema.find("required"); r != schema.end()) {
      if (!r->is_array()) return Refuse(pointer, "'required' must be an array");
      for (const Json& name : *r) {
        if (!name.is_string() || !properties->contains(name.get<std::string>())) {
          return Refuse(pointer, absl::StrCat("'required' names ", name.dump(),
                                              ", which is not in 'properties'"));
        }
        required.insert(name.get<std::string>());
      }
    }
    if (properties->empty()) {
      const Json* additional = nullptr;
      if (auto a = schema.find("additionalProperties"); a != schema.end()) additional = &*a;
      if (additional != nullptr && additional->is_boolean() && !additional->get<bool>()) {
        return structured::Literal("{}");
      }
      ExprPtr value;
      if (additional == nullptr || additional->is_boolean()) {
        value = GenericValue();
      } else {
        absl::StatusOr<ExprPtr> v = Value(*additional, pointer + "/additionalProperties");
        if (!v.ok()) return v.status();
        value = *v;
      }
      const ExprPtr member = structured::Sequence({BareKey(), structured::Literal(":"), value});
      return structured::Sequence({structured::Literal("{"),
                                   structured::Optional(structured::Sequence(
                                       {member, structured::Star(structured::Sequence(
                                                    {structured::Literal(","), member}))})),
                                   structured::Literal("}")});
    }
    const std::vector<std::string> keys = DictSortedKeys(*properties);
    const int n = static_cast<int>(keys.size());
    std::vector<structured::GraphEdge> edges;
    auto node = [](int i, int e) { return 2 * i + e; };
    for (int i = 0; i < n; ++i) {
      const std::string& key = keys[i];
      if (key.find(kGemmaQuote) != std::string::npos) {
        return Refuse(pointer, absl::StrCat("the property name '", key,
                                            "' contains <|\"|> and cannot be written"));
      }
      absl::StatusOr<ExprPtr> value =
          Value((*properties)[key], absl::StrCat(pointer, "/properties/", key));
      if (!value.ok()) return value.status();
      const ExprPtr key_expr =
          CanBeBare(key) ? structured::Literal(key)
                         : structured::Sequence({Marker(kGemmaQuote), structured::Literal(key),
                                                 Marker(kGemmaQuote)});
      const ExprPtr member = structured::Sequence({key_expr, structured::Literal(":"), *value});
      const bool optional = required.count(key) == 0;
      for (int e = 0; e < 2; ++e) {
        if (optional) edges.push_back({node(i, e), node(i + 1, e), nullptr});
        edges.push_back(
            {node(i, e), node(i + 1, 1),
             e == 0 ? member : structured::Sequence({structured::Literal(","), member})});
      }
    }
    return structured::Sequence(
        {structured::Literal("{"),
         structured::Graph(2 * (n + 1), node(0, 0), {node(n, 0), node(n, 1)}, std::move(edges)),
         structured::Literal("}")});
  }

  absl::StatusOr<ExprPtr> Array(const Json& schema, const std::string& pointer) {
    ExprPtr item = GenericValue();
    if (auto it = schema.find("items"); it != schema.end()) {
      absl::StatusOr<ExprPtr> v = Value(*it, pointer + "/items");
      if (!v.ok()) return v.status();
      item = *v;
    }
    absl::StatusOr<std::pair<int, int>> bounds =
        Bounds(schema, "minItems", "maxItems", pointer, /*cap=*/1000);
    if (!bounds.ok()) return bounds.status();
    const auto [lo, hi] = *bounds;
    const ExprPtr open = structured::Literal("["), close = structured::Literal("]");
    if (hi == 0) return structured::Literal("[]");
    const ExprPtr more = structured::Repeat(structured::Sequence({structured::Literal(","), item}),
                                            std::max(lo - 1, 0), hi < 0 ? -1 : hi - 1);
    const ExprPtr items = structured::Sequence({item, more});
    return structured::Sequence({open, lo == 0 ? structured::Optional(items) : items, close});
  }

  // <|"|>TEXT<|"|> with TEXT never containing <|"|> (the parser would end the string there), of
  // minLength..maxLength code points. Graph node (i, k): i code points read (capped at the count
  // that still matters), k characters of <|"|> just matched.
  absl::StatusOr<ExprPtr> String(const Json& schema, const std::string& pointer) {
    const bool has_length = schema.contains("minLength") || schema.contains("maxLength");
    if (has_length + schema.contains("pattern") + schema.contains("format") > 1) {
      return Refuse(pointer, "a string may have only one of pattern, format, minLength/maxLength");
    }
    if (schema.contains("pattern") || schema.contains("format"))
      return PatternString(schema, pointer);
    absl::StatusOr<std::pair<int, int>> bounds =
        Bounds(schema, "minLength", "maxLength", pointer, kMaxCountedStringLength);
    if (!bounds.ok()) return bounds.status();
    const auto [lo, hi] = *bounds;
    const int layers = (hi >= 0 ? hi : lo) + 1;
    constexpr std::string_view kQuote = kGemmaQuote;
    std::vector<structured::GraphEdge> edges;
    auto node = [](int i, int k) { return 5 * i + k; };
    for (int i = 0; i < layers; ++i) {
      int next = i + 1;
      if (next == layers) {
        if (hi >= 0) continue;  // The longest string: nothing more.
        next = i;               // Unbounded: the last layer loops.
      }
      for (int k = 0; k < 5; ++k) {
        const uint32_t expected = static_cast<uint8_t>(kQuote[k]);
        structured::CodepointRanges others = {{expected, expected}, {'<', '<'}};
        others = structured::ComplementRanges(structured::NormalizeRanges(others));
        edges.push_back({node(i, k), node(next, 0), structured::CodepointSet(others)});
        if (expected != '<') {
          edges.push_back({node(i, k), node(next, 1), structured::CodepointSet({{'<', '<'}})});
        }
        if (k + 1 < 5) {
          edges.push_back(
              {node(i, k), node(next, k + 1), structured::CodepointSet({{expected, expected}})});
        }
      }
    }
    std::vector<int> finals;
    for (int i = lo; i < layers; ++i) {
      for (int k = 0; k < 5; ++k) finals.push_back(node(i, k));
    }
    return structured::Sequence(
        {Marker(kGemmaQuote),
         structured::Graph(5 * layers, node(0, 0), std::move(finals), std::move(edges)),
         Marker(kGemmaQuote)});
  }

  // A string matching `pattern` (anywhere unless anchored, as JSON Schema says) or a `format`,
  // written raw between quote markers. Its characters never include '<', so it never contains the
  // closing marker: a subset of the valid strings, as every generated value must validate.
  absl::StatusOr<ExprPtr> PatternString(const Json& schema, const std::string& pointer) {
    auto encode = [](const structured::CodepointRanges& ranges) {
      structured::CodepointRanges kept;
      for (auto [lo, hi] : ranges) {
        if (lo <= '<' && '<' <= hi) {
          if (lo < '<') kept.emplace_back(lo, '<' - 1);
          if (hi > '<') kept.emplace_back('<' + 1, hi);
        } else {
          kept.emplace_back(lo, hi);
        }
      }
      return kept.empty() ? structured::Nothing() : structured::CodepointSet(kept);
    };
    std::string pattern;
    if (auto f = schema.find("format"); f != schema.end()) {
      if (!f->is_string()) return Refuse(pointer, "'format' must be a string");
      absl::StatusOr<std::string> p = structured::FormatPattern(f->get<std::string>());
      if (!p.ok()) return Refuse(pointer, std::string(p.status().message()));
      pattern = *p;
    } else {
      if (!schema["pattern"].is_string()) return Refuse(pointer, "'pattern' must be a string");
      pattern = schema["pattern"].get<std::string>();
    }
    structured::RegexOptions options;
    options.ecmascript_dot = true;
    absl::StatusOr<structured::ParsedRegex> parsed =
        structured::ParseRegex(pattern, encode, options);
    if (!parsed.ok()) return Refuse(pointer, absl::StrCat("pattern: ", parsed.status().message()));
    const bool whole = schema.contains("format");
    const ExprPtr any = structured::Star(encode({{0, structured::kMaxCodepoint}}));
    std::vector<ExprPtr> parts = {Marker(kGemmaQuote)};
    if (!whole && !parsed->anchored_start) parts.push_back(any);
    parts.push_back(parsed->expr);
    if (!whole && !parsed->anchored_end) parts.push_back(any);
    parts.push_back(Marker(kGemmaQuote));
    return structured::Sequence(std::move(parts));
  }

  // minimum / maximum / exclusiveMinimum / exclusiveMaximum (numbers, or draft-4 booleans), as the
  // regular languages of schema_patterns.h; without bounds, any number Python writes.
  absl::StatusOr<ExprPtr> BoundedNumber(const Json& schema, const std::string& pointer,
                                        bool integer) {
    std::optional<std::pair<double, bool>> bound[2];  // lower, upper: value and exclusive
    const char* keys[2][2] = {{"minimum", "exclusiveMinimum"}, {"maximum", "exclusiveMaximum"}};
    for (int side = 0; side < 2; ++side) {
      bool draft4 = false;
      auto consider = [&](double v, bool exclusive) {
        auto& b = bound[side];
        const bool tighter =
            !b || (side == 0 ? v > b->first : v < b->first) || (v == b->first && exclusive);
        if (tighter) b = std::make_pair(v, exclusive);
      };
      if (auto e = schema.find(keys[side][1]); e != schema.end()) {
        if (e->is_boolean()) {
          draft4 = e->get<bool>();
        } else if (e->is_number()) {
          consider(e->get<double>(), true);
        } else {
          return Refuse(pointer, absl::StrCat("'", keys[side][1], "' must be a number"));
        }
      }
      if (auto m = schema.find(keys[side][0]); m != schema.end()) {
        if (!m->is_number()) {
          return Refuse(pointer, absl::StrCat("'", keys[side][0], "' must be a number"));
        }
        consider(m->get<double>(), draft4);
      }
      if (bound[side] && std::fabs(bound[side]->first) > 1e15) {
        return Refuse(pointer, "number bounds beyond +/-1e15 are not supported");
      }
    }
    if (!bound[0] && !bound[1]) return integer ? Integer() : Number();
    std::string pattern;
    if (integer) {
      std::optional<int64_t> lo, hi;
      if (bound[0]) {
        lo = static_cast<int64_t>(bound[0]->second ? std::floor(bound[0]->first) + 1
                                                   : std::ceil(bound[0]->first));
      }
      if (bound[1]) {
        hi = static_cast<int64_t>(bound[1]->second ? std::ceil(bound[1]->first) - 1
                                                   : std::floor(bound[1]->first));
      }
      if (lo && hi && *lo > *hi) return Refuse(pointer, "the integer bounds leave no value");
      pattern = structured::IntegerRangePattern(lo, hi, 15);
    } else {
      std::optional<structured::NumberBound> lo, hi;
      for (int side = 0; side < 2; ++side) {
        if (!bound[side]) continue;
        if (std::floor(bound[side]->first) != bound[side]->first) {
          return Refuse(pointer, "non-integer bounds on a number are not supported");
        }
        (side == 0 ? lo : hi) =
            structured::NumberBound{static_cast<int64_t>(bound[side]->first), bound[side]->second};
      }
      if (lo && hi &&
          (lo->value > hi->value || (lo->value == hi->value && (lo->exclusive || hi->exclusive)))) {
        return Refuse(pointer, "the number bounds leave no value");
      }
      pattern = structured::NumberRangePattern(lo, hi, 15);
    }
    absl::StatusOr<structured::ParsedRegex> parsed = structured::ParseRegex(
        pattern, [](const structured::CodepointRanges& r) { return structured::CodepointSet(r); });
    if (!parsed.ok()) return parsed.status();
    return parsed->expr;
  }

  absl::StatusOr<std::pair<int, int>> Bounds(const Json& schema, const char* min_key,
                                             const char* max_key, const std::string& pointer,
                                             int cap) {
    int lo = 0, hi = -1;
    for (const char* key : {min_key, max_key}) {
      auto it = schema.find(key);
      if (it == schema.end()) continue;
      if (!it->is_number_unsigned() || it->get<uint64_t>() > static_cast<uint64_t>(cap)) {
        return Refuse(pointer, absl::StrCat("'", key, "' must be an integer in [0, ", cap, "]"));
      }
      (key == min_key ? lo : hi) = static_cast<int>(it->get<uint64_t>());
    }
    if (hi >= 0 && hi < lo) {
      return Refuse(pointer, absl::StrCat("'", max_key, "' is below '", min_key, "'"));
    }
    return std::make_pair(lo, hi);
  }

  static ExprPtr Integer() {
    return structured::Sequence(
        {structured::Optional(structured::Literal("-")),
         structured::Choice({structured::Literal("0"),
                             structured::Sequence(
                                 {structured::ByteRange('1', '9'),
                                  structured::Repeat(structured::ByteRange('0', '9'), 0, 18)})})});
  }

  // JSON's number syntax with the exponent kept to two digits, so that every number is a finite
  // double (Python writes 1e+100 for larger ones; no tool argument needs them).
  static ExprPtr Number() {
    const ExprPtr digits = structured::Plus(structured::ByteRange('0', '9'));
    const ExprPtr exponent_digits = structured::Repeat(structured::ByteRange('0', '9'), 1, 2);
    return structured::Sequence(
        {Integer(), structured::Optional(structured::Sequence({structured::Literal("."), digits})),
         structured::Optional(structured::Sequence(
             {structured::Choice({structured::Literal("e"), structured::Literal("E")}),
              structured::Optional(
                  structured::Choice({structured::Literal("+"), structured::Literal("-")})),
              exponent_digits}))});
  }

  // A key written bare: no structure characters, no whitespace, no '<' (so never <|"|>).
  static ExprPtr BareKey() {
    structured::CodepointRanges banned = {{':', ':'},   {'{', '{'},  {'}', '}'}, {'[', '['},
                                          {']', ']'},   {',', ','},  {'<', '<'}, {' ', ' '},
                                          {'\t', '\n'}, {'\r', '\r'}};
    return structured::Plus(structured::CodepointSet(
        structured::ComplementRanges(structured::NormalizeRanges(std::move(banned)))));
  }

  // Any value format_argument writes (a recursive rule, built once).
  ExprPtr GenericValue() {
    if (generic_rule_ >= 0) return structured::RuleRef(generic_rule_);
    generic_rule_ = g_->AddRule("value");
    const ExprPtr value = structured::RuleRef(generic_rule_);
    const ExprPtr member = structured::Sequence({BareKey(), structured::Literal(":"), value});
    auto list = [](ExprPtr open, ExprPtr element, ExprPtr close) {
      return structured::Sequence({open,
                                   structured::Optional(structured::Sequence(
                                       {element, structured::Star(structured::Sequence(
                                                     {structured::Literal(","), element}))})),
                                   close});
    };
    absl::StatusOr<ExprPtr> string = String(Json::object(), "");
    g_->rule_bodies[generic_rule_] =
        structured::Choice({*string, Number(), structured::Literal("true"),
                            structured::Literal("false"), structured::Literal("None"),
                            list(structured::Literal("{"), member, structured::Literal("}")),
                            list(structured::Literal("["), value, structured::Literal("]"))});
    return value;
  }

  structured::Grammar* g_;
  const structured::Vocabulary& v_;
  std::string function_;
  const Json* root_ = nullptr;
  std::map<std::string, int> ref_rules_;
  int generic_rule_ = -1;
};

}  // namespace

absl::StatusOr<structured::Grammar> BuildToolCallGrammar(const Json& tools,
                                                         const ToolCallGrammarOptions& options,
                                                         const structured::Vocabulary& vocabulary) {
  if (!tools.is_array() || tools.empty()) {
    return absl::InvalidArgumentError("a forced tool call needs at least one tool");
  }
  structured::Grammar grammar;
  grammar.root = grammar.AddRule("root");
  std::vector<ExprPtr> calls;
  for (const Json& tool : tools) {
    const Json* function =
        tool.is_object() && tool.contains("function") ? &tool["function"] : nullptr;
    if (function == nullptr || !function->is_object() || !function->contains("name") ||
        !(*function)["name"].is_string()) {
      return absl::InvalidArgumentError("each tool needs function.name (a string)");
    }
    const std::string name = (*function)["name"].get<std::string>();
    if (!options.function.empty() && name != options.function) continue;
    absl::StatusOr<ParsedToolCall> check = ParseGemmaToolCall("call:" + name + "{}");
    if (!check.ok() || check->name != name) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the function name '", name, "' cannot be written in Gemma 4's tool-call syntax"));
    }
    // Each function gets its own builder: $ref and $defs are local to its parameters.
    Builder builder(&grammar, vocabulary);
    const Json* parameters =
        function->contains("parameters") ? &(*function)["parameters"] : nullptr;
    absl::StatusOr<ExprPtr> call = builder.Call(name, parameters);
    if (!call.ok()) return call.status();
    calls.push_back(*call);
  }
  if (calls.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tool_choice names the function '",
                                                   options.function,
                                                   "', which is not among the request's tools"));
  }
  ExprPtr one = calls.size() == 1 ? calls[0] : structured::Choice(std::move(calls));
  if (options.parallel_tool_calls) {
    // calls ::= call calls? as a recursive rule rather than call+: a loop around the call's whole
    // automaton made some argument languages (numbers with exclusive bounds) determinize into
    // more than 200000 states; the recursion keeps one call's automaton and a stack frame per call.
    const int rest = grammar.AddRule("calls");
    grammar.rule_bodies[rest] =
        structured::Sequence({one, structured::Optional(structured::RuleRef(rest))});
    grammar.rule_bodies[grammar.root] = structured::RuleRef(rest);
  } else {
    grammar.rule_bodies[grammar.root] = one;
  }
  return grammar;
}

}  // namespace tessera::runtime
