#include "runtime/structured/json_schema.h"

#include <cmath>
#include <deque>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/structured/regex_parser.h"
#include "runtime/structured/schema_patterns.h"

namespace tessera::runtime::structured {
namespace {

using json = nlohmann::ordered_json;

const std::set<std::string>& Annotations() {
  static const auto* s = new std::set<std::string>{
      "title",    "description", "default",  "examples",  "$schema", "$id",
      "$comment", "deprecated",  "readOnly", "writeOnly", "$defs",   "definitions"};
  return *s;
}
const std::set<std::string>& ObjectKeywords() {
  static const auto* s =
      new std::set<std::string>{"properties", "required", "additionalProperties"};
  return *s;
}
const std::set<std::string>& ArrayKeywords() {
  static const auto* s = new std::set<std::string>{"items",    "prefixItems", "minItems",
                                                   "maxItems", "uniqueItems", "additionalItems"};
  return *s;
}
const std::set<std::string>& StringKeywords() {
  static const auto* s = new std::set<std::string>{"minLength", "maxLength", "pattern", "format"};
  return *s;
}
const std::set<std::string>& NumberKeywords() {
  static const auto* s =
      new std::set<std::string>{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
  return *s;
}
const std::set<std::string>& OtherKeywords() {
  static const auto* s =
      new std::set<std::string>{"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"};
  return *s;
}

// The JSON Schema type of a value ("integer" for integral numbers).
std::string TypeOf(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float: {
      const double d = v.get<double>();
      return std::isfinite(d) && std::floor(d) == d ? "integer" : "number";
    }
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    default:
      return "object";
  }
}

bool TypeAllows(const std::string& type, const std::string& value_type) {
  return type == value_type || (type == "number" && value_type == "integer");
}

class JsonGrammarBuilder {
 public:
  explicit JsonGrammarBuilder(const JsonGrammarOptions& options) : opt_(options) {
    if (opt_.compact_whitespace) {
      ws_ = Epsilon();
    } else {
      ws_ = Choice({Epsilon(), Literal(" "),
                    Sequence({Literal("\n"), Repeat(SymbolsExpr([] {
                                                      SymbolSet s = SymbolSet::Single(' ');
                                                      s.AddRange('\t', '\t');
                                                      return s;
                                                    }()),
                                                    0, opt_.max_indent)})});
    }
  }

  Grammar& grammar() { return g_; }
  ExprPtr Ws() const { return ws_; }

  // ---- Strings ----

  static ExprPtr Hex() {
    SymbolSet s = SymbolSet::Range('0', '9');
    s.AddRange('A', 'F');
    s.AddRange('a', 'f');
    return SymbolsExpr(s);
  }

  // One character of an unconstrained string: raw UTF-8 (not `"`, `\` or a control character) or
  // an escape. \u escapes of surrogates are not generated (not every parser accepts lone ones).
  ExprPtr StringChar() {
    if (string_char_) return string_char_;
    SymbolSet short_escapes;
    for (char c : std::string("\"\\/bfnrt")) short_escapes.AddRange(c, c);
    SymbolSet hex_not_d = SymbolSet::Range('0', '9');
    hex_not_d.AddRange('A', 'C');
    hex_not_d.AddRange('E', 'F');
    hex_not_d.AddRange('a', 'c');
    hex_not_d.AddRange('e', 'f');
    SymbolSet d = SymbolSet::Single('D');
    d.AddRange('d', 'd');
    const ExprPtr u_escape = Sequence(
        {Literal("u"), Choice({Sequence({SymbolsExpr(hex_not_d), Hex(), Hex(), Hex()}),
                               Sequence({SymbolsExpr(d), ByteRange('0', '7'), Hex(), Hex()})})});
    string_char_ =
        Choice({CodepointSet({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, kMaxCodepoint}}),
                Sequence({Literal("\\"), Choice({SymbolsExpr(short_escapes), u_escape})})});
    return string_char_;
  }

  ExprPtr AnyString() {
    if (!any_string_) any_string_ = Sequence({Literal("\""), Star(StringChar()), Literal("\"")});
    return any_string_;
  }

  // Characters of `set` written inside a JSON string, one way each: raw when JSON allows it, the
  // short escape for `"` `\` \b \f \n \r \t, \u00XX for other control characters.
  static ExprPtr JsonChars(const CodepointRanges& set) {
    CodepointRanges raw;
    std::vector<ExprPtr> alternatives;
    for (auto [lo, hi] : NormalizeRanges(set)) {
      for (uint32_t cp = lo; cp <= std::min<uint32_t>(hi, 0x5C); ++cp) {
        if (cp >= 0x20 && cp != '"' && cp != '\\') {
          raw.emplace_back(cp, cp);
          continue;
        }
        std::string esc;
        switch (cp) {
          case '"':
            esc = "\\\"";
            break;
          case '\\':
            esc = "\\\\";
            break;
          case '\b':
            esc = "\\b";
            break;
          case '\f':
            esc = "\\f";
            break;
          case '\n':
            esc = "\\n";
            break;
          case '\r':
            esc = "\\r";
            break;
          case '\t':
            esc = "\\t";
            break;
          default: {
            static const char kHex[] = "0123456789abcdef";
            esc =
                absl::StrCat("\\u00", std::string(1, kHex[cp >> 4]), std::string(1, kHex[cp & 15]));
          }
        }
        alternatives.push_back(Literal(esc));
      }
      if (hi > 0x5C) raw.emplace_back(std::max<uint32_t>(lo, 0x5D), hi);
    }
    if (!raw.empty()) alternatives.insert(alternatives.begin(), CodepointSet(raw));
    return Choice(std::move(alternatives));
  }

  // ---- Numbers ----

  absl::StatusOr<ExprPtr> Pattern(const std::string& pattern, bool json_string) {
    RegexOptions ro;
    ro.ecmascript_dot = true;
    auto parsed =
        ParseRegex(pattern, json_string ? CharEncoder(JsonChars) : CharEncoder(CodepointSet), ro);
    if (!parsed.ok()) return parsed.status();
    return parsed->expr;
  }

  ExprPtr AnyNumber() {
    return *Pattern(
        absl::StrCat("-?(?:0|[1-9]\\d{0,", opt_.max_integer_digits - 1, "})(?:\\.\\d{1,",
                     opt_.max_fraction_digits, "})?(?:[eE][+-]?\\d{1,2})?"),
        false);
  }
  ExprPtr AnyInteger() {
    return *Pattern(absl::StrCat("0|-?[1-9]\\d{0,", opt_.max_integer_digits - 1, "}"), false);
  }

  // ---- Generic JSON (recursive rules for containers, scalars inline) ----

  ExprPtr AnyValue() {
    EnsureGenericRules();
    return Choice({AnyString(), AnyNumber(), Literal("true"), Literal("false"), Literal("null"),
                   RuleRef(object_rule_), RuleRef(array_rule_)});
  }
  int ObjectRule() {
    EnsureGenericRules();
    return object_rule_;
  }

  void EnsureGenericRules() {
    if (object_rule_ >= 0) return;
    object_rule_ = g_.AddRule("json-object");
    array_rule_ = g_.AddRule("json-array");
    const ExprPtr value = Choice({AnyString(), AnyNumber(), Literal("true"), Literal("false"),
                                  Literal("null"), RuleRef(object_rule_), RuleRef(array_rule_)});
    const ExprPtr member = Sequence({AnyString(), ws_, Literal(":"), ws_, value, ws_});
    g_.rule_bodies[object_rule_] = Sequence(
        {Literal("{"), ws_,
         Optional(Sequence({member, Star(Sequence({Literal(","), ws_, member}))})), Literal("}")});
    const ExprPtr element = Sequence({value, ws_});
    g_.rule_bodies[array_rule_] =
        Sequence({Literal("["), ws_,
                  Optional(Sequence({element, Star(Sequence({Literal(","), ws_, element}))})),
                  Literal("]")});
  }

  // "[" ws elements "]": `fixed` first (each once), then `rest` between rest_min and rest_max
  // times (rest_max < 0: unbounded; rest nullptr: none).
  ExprPtr ArrayOf(const std::vector<ExprPtr>& fixed, ExprPtr rest, int rest_min, int rest_max) {
    std::vector<ExprPtr> body;
    for (size_t i = 0; i < fixed.size(); ++i) {
      if (i > 0) {
        body.push_back(Literal(","));
        body.push_back(ws_);
      }
      body.push_back(fixed[i]);
      body.push_back(ws_);
    }
    if (rest != nullptr && rest_max != 0) {
      const ExprPtr next = Sequence({Literal(","), ws_, rest, ws_});
      if (!fixed.empty()) {
        body.push_back(Repeat(next, rest_min, rest_max));
      } else {
        const ExprPtr some = Sequence(
            {rest, ws_, Repeat(next, std::max(rest_min - 1, 0), rest_max < 0 ? -1 : rest_max - 1)});
        body.push_back(rest_min == 0 ? Optional(some) : some);
      }
    }
    std::vector<ExprPtr> all = {Literal("["), ws_};
    all.insert(all.end(), body.begin(), body.end());
    all.push_back(Literal("]"));
    return Sequence(std::move(all));
  }

  const JsonGrammarOptions& options() const { return opt_; }

 private:
  JsonGrammarOptions opt_;
  Grammar g_;
  ExprPtr ws_;
  ExprPtr string_char_;
  ExprPtr any_string_;
  int object_rule_ = -1;
  int array_rule_ = -1;
};

class SchemaConverter {
 public:
  SchemaConverter(const json& root, const JsonGrammarOptions& options) : root_(root), b_(options) {}

  absl::StatusOr<Grammar> Convert() {
    Grammar& g = b_.grammar();
    const int root_rule = g.AddRule("root");
    g.root = root_rule;
    auto body = Visit(root_, "#", 0);
    if (!body.ok()) return body.status();
    g.rule_bodies[root_rule] = *body;
    while (!pending_.empty()) {
      auto [rule, target, path] = pending_.front();
      pending_.pop_front();
      auto e = Visit(*target, path, 0);
      if (!e.ok()) return e.status();
      g.rule_bodies[rule] = *e;
    }
    return std::move(g);
  }

 private:
  static absl::Status Refuse(const std::string& what, const std::string& path) {
    return absl::InvalidArgumentError(absl::StrCat("JSON Schema ", what, " (at ", path, ")"));
  }

  absl::StatusOr<const json*> Resolve(const std::string& ref, const std::string& path) {
    if (ref.empty() || ref[0] != '#') {
      return Refuse(
          absl::StrCat("$ref '", ref, "' is not supported: only local references ('#...')"), path);
    }
    const json* node = &root_;
    if (ref == "#") return node;
    if (ref.size() < 2 || ref[1] != '/') {
      return Refuse(
          absl::StrCat("$ref '", ref, "' is not a JSON pointer ($anchor is not supported)"), path);
    }
    size_t pos = 2;
    while (true) {
      const size_t slash = ref.find('/', pos);
      std::string token =
          ref.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      std::string unescaped;
      for (size_t i = 0; i < token.size(); ++i) {
        if (token[i] == '~' && i + 1 < token.size()) {
          unescaped.push_back(token[i + 1] == '1' ? '/' : '~');
          ++i;
        } else {
          unescaped.push_back(token[i]);
        }
      }
      if (node->is_object() && node->contains(unescaped)) {
        node = &(*node)[unescaped];
      } else if (node->is_array() && !unescaped.empty() &&
                 unescaped.find_first_not_of("0123456789") == std::string::npos &&
                 std::stoul(unescaped) < node->size()) {
        node = &(*node)[std::stoul(unescaped)];
      } else {
        return Refuse(absl::StrCat("$ref '", ref, "' does not resolve"), path);
      }
      if (slash == std::string::npos) break;
      pos = slash + 1;
    }
    return node;
  }

  absl::StatusOr<ExprPtr> Ref(const std::string& ref, const std::string& path) {
    auto it = ref_rules_.find(ref);
    if (it != ref_rules_.end()) return RuleRef(it->second);
    auto target = Resolve(ref, path);
    if (!target.ok()) return target.status();
    const int rule = b_.grammar().AddRule(ref);
    ref_rules_[ref] = rule;
    pending_.push_back({rule, *target, ref});
    return RuleRef(rule);
  }

  // The schema a $ref chain ends at (for oneOf checks); nullptr if it does not resolve.
  const json* Follow(const json* s) {
    for (int hops = 0; hops < 32 && s->is_object() && s->contains("$ref"); ++hops) {
      if (!(*s)["$ref"].is_string()) return nullptr;
      auto t = Resolve((*s)["$ref"].get<std::string>(), "");
      if (!t.ok()) return nullptr;
      s = *t;
    }
    return s;
  }

  // oneOf branches are generated as alternatives; that is exact only if no value can match two.
  bool OneOfIsDisjoint(const json& branches) {
    std::vector<const json*> bs;
    for (const auto& b : branches) {
      const json* r = Follow(&b);
      if (r == nullptr || !r->is_object()) return false;
      bs.push_back(r);
    }
    // By type: one distinct type each (integer and number overlap).
    std::set<std::string> types;
    bool typed = true;
    for (const json* b : bs) {
      std::string t;
      if (b->contains("type") && (*b)["type"].is_string()) {
        t = (*b)["type"].get<std::string>();
      } else if (b->contains("const")) {
        t = TypeOf((*b)["const"]);
      } else {
        typed = false;
        break;
      }
      if (t == "integer") t = "number";
      if (!types.insert(t).second) {
        typed = false;
        break;
      }
    }
    if (typed) return true;
    // By a discriminator: a property required in every branch with a distinct const each.
    const json* first = bs[0];
    if (!first->contains("properties") || !first->contains("required")) return false;
    for (const auto& name : (*first)["required"]) {
      if (!name.is_string()) continue;
      std::set<std::string> values;
      bool ok = true;
      for (const json* b : bs) {
        const json* prop = nullptr;
        if (b->contains("properties") && (*b)["properties"].is_object() &&
            (*b)["properties"].contains(name.get<std::string>())) {
          prop = Follow(&(*b)["properties"][name.get<std::string>()]);
        }
        bool required = false;
        if (b->contains("required") && (*b)["required"].is_array()) {
          for (const auto& r : (*b)["required"]) required |= r == name;
        }
        if (prop == nullptr || !required || !prop->is_object()) {
          ok = false;
          break;
        }
        std::string v;
        if (prop->contains("const")) {
          v = (*prop)["const"].dump();
        } else if (prop->contains("enum") && (*prop)["enum"].is_array() &&
                   (*prop)["enum"].size() == 1) {
          v = (*prop)["enum"][0].dump();
        } else {
          ok = false;
          break;
        }
        if (!values.insert(v).second) {
          ok = false;
          break;
        }
      }
      if (ok) return true;
    }
    return false;
  }

  absl::StatusOr<ExprPtr> Visit(const json& s, const std::string& path, int depth) {
    if (depth > b_.options().max_schema_depth) {
      return Refuse(absl::StrCat("is nested more than ", b_.options().max_schema_depth, " levels"),
                    path);
    }
    if (s.is_boolean()) return s.get<bool>() ? b_.AnyValue() : Nothing();
    if (!s.is_object()) return Refuse("schema is not an object or a boolean", path);
    std::vector<std::string> validation;  // keywords present other than annotations
    for (const auto& [key, value] : s.items()) {
      if (Annotations().count(key)) continue;
      if (!ObjectKeywords().count(key) && !ArrayKeywords().count(key) &&
          !StringKeywords().count(key) && !NumberKeywords().count(key) &&
          !OtherKeywords().count(key)) {
        return Refuse(absl::StrCat("keyword '", key, "' is not supported"), path);
      }
      validation.push_back(key);
    }
    auto only = [&](const std::string& keyword,
                    const std::set<std::string>& allowed) -> absl::Status {
      for (const auto& k : validation) {
        if (k != keyword && !allowed.count(k)) {
          return Refuse(absl::StrCat("'", keyword, "' combined with '", k, "' is not supported"),
                        path);
        }
      }
      return absl::OkStatus();
    };

    if (s.contains("$ref")) {
      if (auto st = only("$ref", {}); !st.ok()) return st;
      if (!s["$ref"].is_string()) return Refuse("$ref is not a string", path);
      return Ref(s["$ref"].get<std::string>(), path);
    }
    if (s.contains("allOf")) {
      if (auto st = only("allOf", {}); !st.ok()) return st;
      if (!s["allOf"].is_array() || s["allOf"].size() != 1) {
        return Refuse("allOf with more than one schema is not supported", path);
      }
      return Visit(s["allOf"][0], path + "/allOf/0", depth + 1);
    }
    for (const char* combinator : {"anyOf", "oneOf"}) {
      if (!s.contains(combinator)) continue;
      if (auto st = only(combinator, {}); !st.ok()) return st;
      const json& branches = s[combinator];
      if (!branches.is_array() || branches.empty()) {
        return Refuse(absl::StrCat(combinator, " is not a non-empty array"), path);
      }
      if (std::string(combinator) == "oneOf" && !OneOfIsDisjoint(branches)) {
        return Refuse(
            "oneOf is supported only when its branches are disjoint (distinct types, or a "
            "required property with a distinct const in each); use anyOf",
            path);
      }
      std::vector<ExprPtr> alternatives;
      for (size_t i = 0; i < branches.size(); ++i) {
        auto e = Visit(branches[i], absl::StrCat(path, "/", combinator, "/", i), depth + 1);
        if (!e.ok()) return e.status();
        alternatives.push_back(*e);
      }
      return Choice(std::move(alternatives));
    }

    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const auto& x : t) {
          if (!x.is_string()) return Refuse("type list has a non-string entry", path);
          types.push_back(x.get<std::string>());
        }
      } else {
        return Refuse("type is not a string or a list of strings", path);
      }
      for (const auto& x : types) {
        static const std::set<std::string> kTypes = {"object",  "array",   "string", "number",
                                                     "integer", "boolean", "null"};
        if (!kTypes.count(x)) return Refuse(absl::StrCat("type '", x, "' is unknown"), path);
      }
    }

    if (s.contains("const") || s.contains("enum")) {
      const char* keyword = s.contains("const") ? "const" : "enum";
      if (auto st = only(keyword, {"type"}); !st.ok()) return st;
      std::vector<json> values;
      if (s.contains("const")) {
        values.push_back(s["const"]);
      } else {
        if (!s["enum"].is_array() || s["enum"].empty()) {
          return Refuse("enum is not a non-empty array", path);
        }
        for (const auto& v : s["enum"]) values.push_back(v);
      }
      std::vector<ExprPtr> alternatives;
      std::set<std::string> seen;
      for (const auto& v : values) {
        bool allowed = types.empty();
        for (const auto& t : types) allowed |= TypeAllows(t, TypeOf(v));
        const std::string text = v.dump(-1, ' ', false);
        if (allowed && seen.insert(text).second) alternatives.push_back(Literal(text));
      }
      if (alternatives.empty()) {
        return Refuse(absl::StrCat(keyword, " has no value of the schema's type"), path);
      }
      return Choice(std::move(alternatives));
    }

    if (types.empty()) {
      // No type: from the keywords present (a value of that type validates).
      for (const auto& k : validation) {
        if (ObjectKeywords().count(k)) {
          types = {"object"};
        } else if (ArrayKeywords().count(k)) {
          types = {"array"};
        } else if (StringKeywords().count(k)) {
          types = {"string"};
        } else if (NumberKeywords().count(k)) {
          types = {"number"};
        }
        if (!types.empty()) break;
      }
      if (types.empty()) return b_.AnyValue();
    }
    std::vector<ExprPtr> alternatives;
    for (const auto& t : types) {
      auto e = TypeExpr(t, s, path, depth);
      if (!e.ok()) return e.status();
      alternatives.push_back(*e);
    }
    return Choice(std::move(alternatives));
  }

  absl::StatusOr<int> NonNegativeInt(const json& s, const char* key, const std::string& path) {
    const json& v = s[key];
    if (!v.is_number_integer() &&
        !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>())) {
      return Refuse(absl::StrCat(key, " is not an integer"), path);
    }
    const double d = v.get<double>();
    if (d < 0) return Refuse(absl::StrCat(key, " is negative"), path);
    if (d > 1'000'000)
      return Refuse(absl::StrCat(key, " ", d, " exceeds the limit of 1000000"), path);
    return static_cast<int>(d);
  }

  absl::StatusOr<ExprPtr> TypeExpr(const std::string& type, const json& s, const std::string& path,
                                   int depth) {
    if (type == "null") return Literal("null");
    if (type == "boolean") return Choice({Literal("true"), Literal("false")});
    if (type == "string") return StringExpr(s, path);
    if (type == "integer" || type == "number") return NumberExpr(type == "integer", s, path);
    if (type == "array") return ArrayExpr(s, path, depth);
    return ObjectExpr(s, path, depth);
  }

  absl::StatusOr<ExprPtr> StringExpr(const json& s, const std::string& path) {
    const bool has_length = s.contains("minLength") || s.contains("maxLength");
    const int kinds = has_length + s.contains("pattern") + s.contains("format");
    if (kinds > 1) {
      return Refuse("a string may have only one of pattern, format, minLength/maxLength", path);
    }
    const ExprPtr quote = Literal("\"");
    if (s.contains("format")) {
      if (!s["format"].is_string()) return Refuse("format is not a string", path);
      auto pattern = FormatPattern(s["format"].get<std::string>());
      if (!pattern.ok()) return Refuse(std::string(pattern.status().message()), path);
      auto e = b_.Pattern(*pattern, true);
      if (!e.ok()) return e.status();
      return Sequence({quote, *e, quote});
    }
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) return Refuse("pattern is not a string", path);
      RegexOptions ro;
      ro.ecmascript_dot = true;
      auto parsed = ParseRegex(s["pattern"].get<std::string>(), JsonGrammarBuilder::JsonChars, ro);
      if (!parsed.ok()) {
        return Refuse(absl::StrCat("pattern: ", parsed.status().message()), path);
      }
      // JSON Schema patterns match anywhere in the string unless anchored.
      const ExprPtr any = Star(JsonGrammarBuilder::JsonChars({{0, kMaxCodepoint}}));
      std::vector<ExprPtr> parts = {quote};
      if (!parsed->anchored_start) parts.push_back(any);
      parts.push_back(parsed->expr);
      if (!parsed->anchored_end) parts.push_back(any);
      parts.push_back(quote);
      return Sequence(std::move(parts));
    }
    int min = 0, max = -1;
    if (s.contains("minLength")) {
      auto v = NonNegativeInt(s, "minLength", path);
      if (!v.ok()) return v.status();
      min = *v;
    }
    if (s.contains("maxLength")) {
      auto v = NonNegativeInt(s, "maxLength", path);
      if (!v.ok()) return v.status();
      max = *v;
      if (max < min) return Refuse("maxLength is below minLength", path);
    }
    if (min == 0 && max < 0) return b_.AnyString();
    return Sequence({quote, Repeat(b_.StringChar(), min, max), quote});
  }

  // A bound as a number; nullopt if absent. Draft-4 boolean exclusive flags are folded in.
  absl::StatusOr<std::optional<std::pair<double, bool>>> Bound(const json& s, const char* inclusive,
                                                               const char* exclusive,
                                                               const std::string& path) {
    std::optional<std::pair<double, bool>> out;
    auto tighter = [&](double v, bool ex, bool lower) {
      if (!out || (lower ? (v > out->first || (v == out->first && ex))
                         : (v < out->first || (v == out->first && ex)))) {
        out = std::make_pair(v, ex);
      }
    };
    const bool lower = std::string(inclusive) == "minimum";
    bool draft4_exclusive = false;
    if (s.contains(exclusive)) {
      const json& e = s[exclusive];
      if (e.is_boolean()) {
        draft4_exclusive = e.get<bool>();
      } else if (e.is_number()) {
        tighter(e.get<double>(), true, lower);
      } else {
        return Refuse(absl::StrCat(exclusive, " is not a number"), path);
      }
    }
    if (s.contains(inclusive)) {
      if (!s[inclusive].is_number())
        return Refuse(absl::StrCat(inclusive, " is not a number"), path);
      tighter(s[inclusive].get<double>(), draft4_exclusive, lower);
    }
    if (out && std::fabs(out->first) > 1e15) {
      return Refuse(absl::StrCat(out->second ? exclusive : inclusive, " ", out->first,
                                 " is beyond the supported range of +/-1e15"),
                    path);
    }
    return out;
  }

  absl::StatusOr<ExprPtr> NumberExpr(bool integer, const json& s, const std::string& path) {
    auto lo = Bound(s, "minimum", "exclusiveMinimum", path);
    if (!lo.ok()) return lo.status();
    auto hi = Bound(s, "maximum", "exclusiveMaximum", path);
    if (!hi.ok()) return hi.status();
    if (!*lo && !*hi) return integer ? b_.AnyInteger() : b_.AnyNumber();
    const int digits = b_.options().max_integer_digits;
    std::string pattern;
    if (integer) {
      std::optional<int64_t> ilo, ihi;
      if (*lo) {
        const auto [v, ex] = **lo;
        ilo = static_cast<int64_t>(ex ? std::floor(v) + 1 : std::ceil(v));
      }
      if (*hi) {
        const auto [v, ex] = **hi;
        ihi = static_cast<int64_t>(ex ? std::ceil(v) - 1 : std::floor(v));
      }
      if (ilo && ihi && *ilo > *ihi) return Refuse("the integer bounds leave no value", path);
      pattern = IntegerRangePattern(ilo, ihi, digits);
    } else {
      std::optional<NumberBound> nlo, nhi;
      for (auto [bound, out, name] :
           {std::make_tuple(&*lo, &nlo, "minimum"), std::make_tuple(&*hi, &nhi, "maximum")}) {
        if (!*bound) continue;
        const auto [v, ex] = **bound;
        if (std::floor(v) != v) {
          return Refuse(absl::StrCat("non-integer ", name, " ", v,
                                     " on a number is not supported (integer-valued bounds only)"),
                        path);
        }
        *out = NumberBound{static_cast<int64_t>(v), ex};
      }
      if (nlo && nhi &&
          (nlo->value > nhi->value ||
           (nlo->value == nhi->value && (nlo->exclusive || nhi->exclusive)))) {
        return Refuse("the number bounds leave no value", path);
      }
      pattern = NumberRangePattern(nlo, nhi, digits);
    }
    return b_.Pattern(pattern, false);
  }

  absl::StatusOr<ExprPtr> ArrayExpr(const json& s, const std::string& path, int depth) {
    if (s.contains("uniqueItems") &&
        !(s["uniqueItems"].is_boolean() && !s["uniqueItems"].get<bool>())) {
      return Refuse("keyword 'uniqueItems' is not supported", path);
    }
    int min = 0, max = -1;
    if (s.contains("minItems")) {
      auto v = NonNegativeInt(s, "minItems", path);
      if (!v.ok()) return v.status();
      min = *v;
    }
    if (s.contains("maxItems")) {
      auto v = NonNegativeInt(s, "maxItems", path);
      if (!v.ok()) return v.status();
      max = *v;
      if (max < min) return Refuse("maxItems is below minItems", path);
    }
    // Tuple forms: prefixItems (+ items for the rest), or draft-4 array `items` (+
    // additionalItems).
    const json* prefix = nullptr;
    const json* rest = nullptr;
    std::string prefix_key, rest_key;
    if (s.contains("prefixItems")) {
      prefix = &s["prefixItems"];
      prefix_key = "prefixItems";
      if (s.contains("items")) rest = &s["items"], rest_key = "items";
      if (s.contains("additionalItems")) return Refuse("additionalItems with prefixItems", path);
    } else if (s.contains("items") && s["items"].is_array()) {
      prefix = &s["items"];
      prefix_key = "items";
      if (s.contains("additionalItems")) rest = &s["additionalItems"], rest_key = "additionalItems";
    } else if (s.contains("additionalItems")) {
      return Refuse("additionalItems without an items array", path);
    }
    if (prefix == nullptr) {
      ExprPtr item = b_.AnyValue();
      if (s.contains("items")) {
        auto e = Visit(s["items"], path + "/items", depth + 1);
        if (!e.ok()) return e.status();
        item = *e;
      }
      return b_.ArrayOf({}, item, min, max);
    }
    if (!prefix->is_array()) return Refuse(absl::StrCat(prefix_key, " is not an array"), path);
    const int k = static_cast<int>(prefix->size());
    const int p = max >= 0 ? std::min(k, max) : k;
    std::vector<ExprPtr> fixed;
    for (int i = 0; i < p; ++i) {
      auto e = Visit((*prefix)[i], absl::StrCat(path, "/", prefix_key, "/", i), depth + 1);
      if (!e.ok()) return e.status();
      fixed.push_back(*e);
    }
    ExprPtr rest_expr;
    if (rest == nullptr) {
      // Extra items are allowed (any value), but generated only if minItems needs them.
      if (min > p) rest_expr = b_.AnyValue();
    } else if (!(rest->is_boolean() && !rest->get<bool>())) {
      auto e = Visit(*rest, path + "/" + rest_key, depth + 1);
      if (!e.ok()) return e.status();
      rest_expr = *e;
    }
    if (rest_expr == nullptr && min > p) {
      return Refuse("minItems exceeds the tuple's items and no more are allowed", path);
    }
    const int rest_min = std::max(0, min - p);
    const int rest_max = rest == nullptr ? rest_min : (max >= 0 ? max - p : -1);
    return b_.ArrayOf(fixed, rest_expr, rest_min, rest_max);
  }

  absl::StatusOr<ExprPtr> ObjectExpr(const json& s, const std::string& path, int depth) {
    const ExprPtr ws = b_.Ws();
    std::vector<std::string> names;
    std::vector<const json*> schemas;
    if (s.contains("properties")) {
      if (!s["properties"].is_object()) return Refuse("properties is not an object", path);
      for (const auto& [name, sub] : s["properties"].items()) {
        names.push_back(name);
        schemas.push_back(&sub);
      }
    }
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return Refuse("required is not an array", path);
      for (const auto& r : s["required"]) {
        if (!r.is_string()) return Refuse("required has a non-string entry", path);
        if (std::find(names.begin(), names.end(), r.get<std::string>()) == names.end()) {
          return Refuse(
              absl::StrCat("required property '", r.get<std::string>(), "' is not in properties"),
              path);
        }
        required.insert(r.get<std::string>());
      }
    }
    // additionalProperties: absent / true / {} allow others (none are generated); false forbids
    // them; a schema is supported for maps (no `properties`).
    const json* additional = nullptr;
    if (s.contains("additionalProperties")) {
      const json& a = s["additionalProperties"];
      if (a.is_object() && !a.empty()) {
        additional = &a;
      } else if (!a.is_boolean() && !a.is_object()) {
        return Refuse("additionalProperties is not a boolean or a schema", path);
      }
    }
    const bool closed = s.contains("additionalProperties") &&
                        s["additionalProperties"].is_boolean() &&
                        !s["additionalProperties"].get<bool>();
    if (names.empty()) {
      if (additional != nullptr) {
        auto v = Visit(*additional, path + "/additionalProperties", depth + 1);
        if (!v.ok()) return v.status();
        const ExprPtr member = Sequence({b_.AnyString(), ws, Literal(":"), ws, *v, ws});
        return Sequence({Literal("{"), ws,
                         Optional(Sequence({member, Star(Sequence({Literal(","), ws, member}))})),
                         Literal("}")});
      }
      if (closed) return Sequence({Literal("{"), ws, Literal("}")});
      return RuleRef(b_.ObjectRule());
    }
    if (additional != nullptr) {
      return Refuse("additionalProperties as a schema together with properties is not supported",
                    path);
    }
    // The object as a graph (linear in the number of properties): 0 -"{" ws-> 1; S_j may start
    // member j or skip it when optional; A_j is after member j; F after "}".
    const int n = static_cast<int>(names.size());
    auto A = [&](int j) { return 1 + j; };      // j = 1..n
    auto S = [&](int j) { return n + 1 + j; };  // j = 1..n
    const int F = 2 * n + 2;
    std::vector<GraphEdge> edges;
    edges.push_back({0, 1, Sequence({Literal("{"), ws})});
    edges.push_back({1, S(1), nullptr});
    std::vector<bool> optional_after(n + 2, true);  // no required property at index >= j
    for (int j = n; j >= 1; --j) {
      optional_after[j] = optional_after[j + 1] && !required.count(names[j - 1]);
    }
    for (int j = 1; j <= n; ++j) {
      auto v = Visit(*schemas[j - 1], absl::StrCat(path, "/properties/", names[j - 1]), depth + 1);
      if (!v.ok()) return v.status();
      const std::string key = json(names[j - 1]).dump(-1, ' ', false);
      edges.push_back({S(j), A(j), Sequence({Literal(key), ws, Literal(":"), ws, *v, ws})});
      if (!required.count(names[j - 1]) && j < n) edges.push_back({S(j), S(j + 1), nullptr});
      if (j < n) edges.push_back({A(j), S(j + 1), Sequence({Literal(","), ws})});
      if (optional_after[j + 1]) edges.push_back({A(j), F, Literal("}")});
    }
    if (optional_after[1]) edges.push_back({1, F, Literal("}")});
    return Graph(F + 1, 0, {F}, std::move(edges));
  }

  const json& root_;
  JsonGrammarBuilder b_;
  std::map<std::string, int> ref_rules_;
  struct Pending {
    int rule;
    const json* target;
    std::string path;
  };
  std::deque<Pending> pending_;
};

}  // namespace

absl::StatusOr<Grammar> JsonSchemaToGrammar(std::string_view schema,
                                            const JsonGrammarOptions& options) {
  json parsed = json::parse(schema.begin(), schema.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("JSON Schema is not valid JSON");
  return SchemaConverter(parsed, options).Convert();
}

Grammar AnyJsonObjectGrammar(const JsonGrammarOptions& options) {
  JsonGrammarBuilder b(options);
  Grammar& g = b.grammar();
  const int root = g.AddRule("root");
  g.root = root;
  g.rule_bodies[root] = RuleRef(b.ObjectRule());
  return std::move(g);
}

}  // namespace tessera::runtime::structured
