// JSON Schema -> grammar: accept/reject tables of JSON texts per schema (what JSON Schema
// validation says of each text, restricted to texts in the generated form: declared property
// order, the documented whitespace), and the refusals naming the keyword.
#include "runtime/structured/json_schema.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/structured/test_util.h"

namespace tessera::runtime::structured {
namespace {

using ::testing::HasSubstr;

struct Case {
  std::string schema;
  std::vector<std::string> accept;
  std::vector<std::string> reject;
};

void RunCases(const std::vector<Case>& cases, const JsonGrammarOptions& options = {}) {
  auto vocab = testing::SmallVocabulary();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.schema);
    auto g = JsonSchemaToGrammar(c.schema, options);
    ASSERT_TRUE(g.ok()) << g.status();
    auto compiled = testing::CompileFor(*g, vocab);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    for (const auto& s : c.accept) EXPECT_TRUE(testing::Matches(**compiled, s)) << "'" << s << "'";
    for (const auto& s : c.reject) EXPECT_FALSE(testing::Matches(**compiled, s)) << "'" << s << "'";
  }
}

TEST(JsonSchemaTest, Scalars) {
  RunCases({
      {R"({"type": "string"})",
       {R"("")", R"("a b")", R"("\"\\\/\b\f\n\r\t")", R"("\u00e9\uFFFF")",
        "\"\xC3\xA9\xF0\x9F\x98\x80\""},
       {"\"a", "\"\n\"", R"("\x")", R"("\u12")", R"("\ud800")", "a", "\"\x01\""}},
      {R"({"type": "integer"})",
       {"0", "-7", "123456789012345"},
       {"-0", "01", "1.0", "1e3", "", "1234567890123456"}},
      {R"({"type": "number"})",
       {"0", "-0.5", "3.14", "1e10", "2.5E-3"},
       {".5", "1.", "+1", "0x1", "1e"}},
      {R"({"type": "boolean"})", {"true", "false"}, {"True", "1"}},
      {R"({"type": "null"})", {"null"}, {"nil", ""}},
      {R"({"type": ["string", "null"]})", {"null", R"("x")"}, {"1"}},
      {R"({"enum": ["red", 1, null, {"a": [true]}]})",
       {R"("red")", "1", "null", R"({"a":[true]})"},
       {R"("blue")", "2", R"({"a": [true]})"}},
      {R"({"type": "string", "enum": ["a", 1]})", {R"("a")"}, {"1"}},
      {R"({"const": "fixed"})", {R"("fixed")"}, {R"("other")"}},
      {R"({"type": "string", "minLength": 2, "maxLength": 3})",
       {R"("ab")", R"("abc")", "\"\xC3\xA9\xC3\xA9\"", R"("\n\n")"},
       {R"("a")", R"("abcd")"}},
      {R"({"type": "string", "pattern": "^[A-Z]{2}-\\d+$"})",
       {R"("AB-1")", R"("XY-123")"},
       {R"("ab-1")", R"("AB-")", R"(" AB-1")"}},
      {R"({"type": "string", "pattern": "ab"})", {R"("ab")", R"("xaby")"}, {R"("a b")"}},
      {R"({"type": "string", "pattern": "^a\"b\\\\$"})", {R"("a\"b\\")"}, {R"("a"b\")"}},
      {R"({"type": "string", "format": "date"})",
       {R"("2024-02-29")"},
       {R"("2023-02-29")", R"("2024-2-1")"}},
      {R"({"type": "integer", "minimum": -3, "exclusiveMaximum": 100})",
       {"-3", "0", "99"},
       {"-4", "100"}},
      {R"({"type": "integer", "minimum": 1.5, "maximum": 3.5})", {"2", "3"}, {"1", "4"}},
      {R"({"type": "integer", "minimum": 5, "exclusiveMinimum": true})", {"6"}, {"5"}},  // draft 4
      {R"({"type": "number", "minimum": 0, "maximum": 1})",
       {"0", "0.5", "1", "1.000"},
       {"1.01", "-0.1", "2"}},
      {R"({"type": "number", "exclusiveMinimum": 0})", {"0.001", "7"}, {"0", "0.000", "-1"}},
  });
}

TEST(JsonSchemaTest, Objects) {
  RunCases({
      {R"({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": false})",
       {R"({"name":"Ann","age":3})", R"({"name": "Ann", "age": 3})",
        "{\n  \"name\": \"Ann\",\n  \"age\": 3\n}", R"({ "name" : "Ann" , "age" : 3 })"},
       {R"({"name":"Ann"})", R"({"age":3,"name":"Ann"})", R"({"name":"Ann","age":3,"x":1})",
        R"({"name":"Ann","age":"3"})", R"({"name":"Ann","age":3} )", R"( {"name":"Ann","age":3})",
        R"({"name":"Ann",  "age":3})"}},
      // Optional properties: any subset, in declaration order, commas right.
      {R"({"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}},
          "required": ["b"]})",
       {R"({"b":1})", R"({"a":1,"b":2})", R"({"b":2,"c":3})", R"({"a":1,"b":2,"c":3})"},
       {R"({})", R"({"a":1})", R"({"a":1,"c":3})", R"({,"b":1})", R"({"b":1,})",
        R"({"c":3,"b":1})"}},
      {R"({"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})",
       {R"({})", R"({"a":1})", R"({"b":2})", R"({"a":1,"b":2})"},
       {R"({,})", R"({"a":1,})"}},
      {R"({"type": "object", "additionalProperties": false})", {"{}", "{ }"}, {R"({"a":1})"}},
      {R"({"type": "object"})", {"{}", R"({"x":[1,{"y":null}],"z":"w"})"}, {"[]", R"({"x"})"}},
      {R"({"type": "object", "additionalProperties": {"type": "integer"}})",
       {"{}", R"({"x":1,"y":2})"},
       {R"({"x":"1"})"}},
      {R"({"type": "object", "properties": {"k\"ey": {"const": 1}}, "required": ["k\"ey"]})",
       {R"({"k\"ey":1})"},
       {R"({"key":1})"}},
  });
}

TEST(JsonSchemaTest, Arrays) {
  RunCases({
      {R"({"type": "array", "items": {"type": "integer"}})",
       {"[]", "[1]", "[1, 2,3]", "[\n  1\n]"},
       {"[1,]", "[,1]", R"(["1"])", "["}},
      {R"({"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 3})",
       {"[true,false]", "[true,true,true]"},
       {"[]", "[true]", "[true,true,true,true]"}},
      {R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false})",
       {R"(["a",1])"},
       {R"(["a"])", R"(["a",1,2])", R"([1,"a"])"}},
      {R"({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "null"}, "maxItems": 3})",
       {R"(["a"])", R"(["a",null,null])"},
       {R"(["a",null,null,null])", "[]"}},
      {R"({"type": "array", "items": [{"const": 1}], "additionalItems": false})",
       {"[1]"},
       {"[1,1]"}},
      {R"({"type": "array", "maxItems": 0})", {"[]"}, {"[1]"}},
  });
}

TEST(JsonSchemaTest, CombinatorsAndReferences) {
  RunCases({
      {R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]})",
       {"5", R"("a")"},
       {R"("ab")", "null"}},
      {R"({"oneOf": [{"type": "integer"}, {"type": "null"}]})", {"1", "null"}, {R"("x")"}},
      {R"({"oneOf": [
           {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
            "required": ["kind", "x"], "additionalProperties": false},
           {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"],
            "additionalProperties": false}]})",
       {R"({"kind":"a","x":1})", R"({"kind":"b"})"},
       {R"({"kind":"b","x":1})", R"({"kind":"c"})"}},
      {R"({"allOf": [{"type": "integer"}], "description": "wrapped"})", {"1"}, {"true"}},
      {R"({"$defs": {"pos": {"type": "integer", "minimum": 1}},
          "type": "object", "properties": {"a": {"$ref": "#/$defs/pos"}, "b": {"$ref": "#/$defs/pos"}},
          "required": ["a", "b"], "additionalProperties": false})",
       {R"({"a":1,"b":2})"},
       {R"({"a":0,"b":2})"}},
      // Recursion through $ref: a tree.
      {R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
           "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
           "required": ["v", "kids"], "additionalProperties": false}},
          "$ref": "#/$defs/node"})",
       {R"({"v":1,"kids":[]})",
        R"({"v":1,"kids":[{"v":2,"kids":[{"v":3,"kids":[]}]},{"v":4,"kids":[]}]})"},
       {R"({"v":1,"kids":[{"v":2}]})", R"({"v":1,"kids":[]}})"}},
      {R"({"definitions": {"a~b/c": {"const": true}}, "$ref": "#/definitions/a~0b~1c"})",
       {"true"},
       {"false"}},
      {R"({"type": "object", "properties": {"self": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
          "required": ["self"], "additionalProperties": false})",
       {R"({"self":null})", R"({"self":{"self":null}})"},
       {R"({"self":{}})"}},
      {"true", {"1", R"({"a":[null]})"}, {"x"}},
      {"{}", {"1", "[]"}, {""}},
  });
}

TEST(JsonSchemaTest, CompactWhitespace) {
  JsonGrammarOptions o;
  o.compact_whitespace = true;
  RunCases(
      {{R"({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}})",
        {"[]", R"([{"a":1},{}])"},
        {"[ ]", R"([{"a": 1}])", R"([{"a":1}, {}])"}}},
      o);
  // The default whitespace is bounded: at most max_indent after a newline.
  RunCases({{R"({"type": "array"})",
             {"[\n" + std::string(20, ' ') + "]"},
             {"[\n" + std::string(21, ' ') + "]", "[  ]"}}});
}

TEST(JsonSchemaTest, AnyJsonObject) {
  auto vocab = testing::SmallVocabulary();
  auto c = testing::CompileFor(AnyJsonObjectGrammar(), vocab);
  ASSERT_TRUE(c.ok()) << c.status();
  for (const char* ok :
       {"{}", R"({"a": {"b": [1, -2.5e3, "x", true, false, null, {}]}})", "{\n  \"k\": []\n}"}) {
    EXPECT_TRUE(testing::Matches(**c, ok)) << ok;
  }
  for (const char* bad : {"[]", "1", R"({"a":})", R"({"a":1,})", R"({'a':1})", "{} "}) {
    EXPECT_FALSE(testing::Matches(**c, bad)) << bad;
  }
}

TEST(JsonSchemaTest, RefusalsNameTheKeyword) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type": "object", "patternProperties": {}})",
       "keyword 'patternProperties' is not supported (at #)"},
      {R"({"properties": {"x": {"not": {}}}})",
       "keyword 'not' is not supported (at #/properties/x)"},
      {R"({"type": "integer", "multipleOf": 3})", "'multipleOf'"},
      {R"({"type": "array", "uniqueItems": true})", "'uniqueItems'"},
      {R"({"if": {}, "then": {}})", "'if'"},
      {R"({"type": "string", "format": "uri"})", "format 'uri' is not supported"},
      {R"({"type": "number", "minimum": 0.5})", "non-integer minimum"},
      {R"({"oneOf": [{"type": "integer"}, {"type": "number"}]})", "oneOf is supported only"},
      {R"({"allOf": [{"type": "integer"}, {"minimum": 1}]})", "allOf with more than one"},
      {R"({"$ref": "https://example.com/s.json"})", "only local references"},
      {R"({"$ref": "#/$defs/missing"})", "does not resolve"},
      {R"({"$ref": "#/$defs/a", "type": "string", "$defs": {"a": {}}})",
       "'$ref' combined with 'type'"},
      {R"({"anyOf": [{}], "properties": {}})", "'anyOf' combined with 'properties'"},
      {R"({"type": "string", "pattern": "(a)\\1"})", "backreferences"},
      {R"({"type": "string", "pattern": "a", "minLength": 2})", "only one of pattern"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})",
       "required property 'b'"},
      {R"({"type": "fancy"})", "type 'fancy' is unknown"},
      {R"({"enum": []})", "enum is not a non-empty array"},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})", "leave no value"},
      {R"({"type": "string", "minLength": 3, "maxLength": 2})", "maxLength is below minLength"},
      {"[1]", "not an object"},
      {"{", "not valid JSON"},
  };
  for (const auto& [schema, message] : cases) {
    auto g = JsonSchemaToGrammar(schema);
    EXPECT_FALSE(g.ok()) << schema;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << schema;
    EXPECT_THAT(g.status().message(), HasSubstr(message)) << schema;
  }
}

}  // namespace
}  // namespace tessera::runtime::structured
