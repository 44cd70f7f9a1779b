#include "runtime/prompt/chat_template.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The 14 renders made by jinja2 3.1.2 from the same template (testdata/chat_template/).
TEST(ChatTemplateTest, MatchesEveryReferenceRenderByteForByte) {
  const std::string path = testing::FixturesDir() + "/chat_template/renders.json";
  const std::string text = ReadFile(path);
  ASSERT_FALSE(text.empty()) << path;
  const nlohmann::json fixture = nlohmann::json::parse(text);
  ASSERT_EQ(fixture["cases"].size(), 14u);
  for (const auto& c : fixture["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto& in = c["input"];
    ChatTemplateInput input;
    input.messages = in["messages"];
    input.tools = in["tools"];
    input.add_generation_prompt = in["add_generation_prompt"].get<bool>();
    input.enable_thinking = in.value("enable_thinking", false);
    absl::StatusOr<std::string> rendered = RenderGemma4ChatTemplate(input);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, c["rendered"].get<std::string>());
  }
}

TEST(ChatTemplateTest, FingerprintIdentifiesTheShippedTemplate) {
  const std::string ours = ReadFile(testing::RunfilePath("runtime/prompt/templates/gemma4.jinja"));
  ASSERT_FALSE(ours.empty());
  EXPECT_EQ(ChatTemplateFingerprint(ours), kGemma4ChatTemplateFingerprint);
  EXPECT_TRUE(CheckChatTemplateSupported(ours).ok());
  // The fixture copy, with CRLF line endings and a trailing newline, is the same template.
  std::string crlf;
  for (char c : ours) {
    if (c == '\n') crlf.push_back('\r');
    crlf.push_back(c);
  }
  EXPECT_TRUE(CheckChatTemplateSupported(crlf + "\r\n").ok());
  // A template differing in spacing around the image placeholder is refused, by name.
  std::string other = ours;
  const std::string needle = "'\\n\\n<|image|>\\n\\n'";
  size_t pos = other.find(needle);
  ASSERT_NE(pos, std::string::npos);
  other.replace(pos, needle.size(), "'<|image|>'");
  absl::Status s = CheckChatTemplateSupported(other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not the Gemma 4 template"), std::string::npos) << s;
}

TEST(ChatTemplateTest, RefusesWhatTheTemplateWouldFailOn) {
  ChatTemplateInput empty;
  EXPECT_EQ(RenderGemma4ChatTemplate(empty).status().code(), absl::StatusCode::kInvalidArgument);
  ChatTemplateInput no_role;
  no_role.messages = nlohmann::json::parse(R"([{"content": "hi"}])");
  EXPECT_EQ(RenderGemma4ChatTemplate(no_role).status().code(), absl::StatusCode::kInvalidArgument);
  ChatTemplateInput untyped;
  untyped.messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  untyped.tools = nlohmann::json::parse(
      R"([{"function": {"name": "f", "parameters": {"properties": {"x": {}}}}}])");
  EXPECT_EQ(RenderGemma4ChatTemplate(untyped).status().code(), absl::StatusCode::kInvalidArgument);
  // Deeply nested arguments end in an error, not a stack overflow.
  nlohmann::json deep = "leaf";
  for (int i = 0; i < 200; ++i) deep = nlohmann::json::array({deep});
  ChatTemplateInput nested;
  nested.messages = nlohmann::json::array(
      {{{"role", "assistant"},
        {"tool_calls", {{{"function", {{"name", "f"}, {"arguments", {{"a", deep}}}}}}}}}});
  EXPECT_EQ(RenderGemma4ChatTemplate(nested).status().code(), absl::StatusCode::kInvalidArgument);
}

// Scalars print as Python's str() would (Jinja's `{{ x }}`), checked against python3 output.
TEST(ChatTemplateTest, ToolArgumentsPrintLikePython) {
  ChatTemplateInput input;
  input.add_generation_prompt = false;
  input.messages = nlohmann::json::parse(R"([{"role": "assistant", "tool_calls": [{"function":
      {"name": "f", "arguments": {"a": 0.1, "b": 1e20, "c": 2.0, "d": null, "e": -3, "f": 1e-05,
       "g": true, "B": [1, "x"]}}}]}])");
  absl::StatusOr<std::string> out = RenderGemma4ChatTemplate(input);
  ASSERT_TRUE(out.ok()) << out.status();
  // dictsort is case-insensitive: "a" < "b" == "B" (stable: B came first in the parsed object).
  EXPECT_EQ(*out,
            "<bos><|turn>model\n<|tool_call>call:f{a:0.1,B:[1,<|\"|>x<|\"|>],b:1e+20,c:2.0,d:None,"
            "e:-3,f:1e-05,g:true}<tool_call|><turn|>\n");
}

}  // namespace
}  // namespace tessera::runtime
