// The automaton builder: minimal DFA sizes against textbook values, inlining (rules left only where
// there is recursion), tail calls, and the refusals.
#include "runtime/structured/automaton.h"

#include <map>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/structured/gbnf_parser.h"
#include "runtime/structured/json_schema.h"
#include "runtime/structured/regex_parser.h"

namespace tessera::runtime::structured {
namespace {

using ::testing::HasSubstr;

int States(const std::string& regex) {
  auto g = RegexToGrammar(regex);
  EXPECT_TRUE(g.ok()) << g.status();
  auto a = Automaton::Build(*g, AutomatonLimits());
  EXPECT_TRUE(a.ok()) << a.status();
  return (*a)->num_states();
}

TEST(AutomatonTest, DfasAreMinimal) {
  // Minimal DFAs without the dead state (ours has none: "no move" is -1).
  EXPECT_EQ(States("(a|b)*abb"), 4);
  // "The n-th symbol from the end is a" needs 2^n states.
  EXPECT_EQ(States("(a|b)*a(a|b){3}"), 16);
  EXPECT_EQ(States("(a|b)*a(a|b){7}"), 256);
  // Equivalent expressions give the same automaton size.
  EXPECT_EQ(States("a*a*"), States("a*"));
  EXPECT_EQ(States("(ab|ab)c|abc"), States("abc"));
  EXPECT_EQ(States("x{0,5}"), 6);
  // Words of length 0 mod 3 over {a}: a cycle of 3.
  EXPECT_EQ(States("(aaa)*"), 3);
  // Long bounded chains minimize quickly (Hopcroft, not Moore rounds).
  EXPECT_EQ(States("[a-z]{0,3000}"), 3001);
}

// Classes of states that no input tells apart, by naive Moore refinement (the reference): a minimal
// automaton has one state per class.
int EquivalenceClasses(const Automaton& a) {
  const int n = a.num_states();
  std::vector<int> block(n);
  for (int s = 0; s < n; ++s) block[s] = a.RuleOf(s) * 2 + a.IsFinal(s);
  for (int round = 0; round <= n; ++round) {
    std::map<std::vector<int>, int> ids;
    std::vector<int> next(n);
    for (int s = 0; s < n; ++s) {
      std::vector<int> sig = {block[s]};
      for (int c = 0; c < a.num_classes(); ++c) {
        const int t = a.NextByClass(s, c);
        sig.push_back(t < 0 ? -1 : block[t]);
      }
      for (const RuleCall* c = a.CallsBegin(s); c != a.CallsEnd(s); ++c) {
        sig.push_back(c->rule);
        sig.push_back(block[c->return_state]);
      }
      next[s] = ids.emplace(sig, static_cast<int>(ids.size())).first->second;
    }
    const bool stable = ids.size() == std::set<int>(block.begin(), block.end()).size();
    block = next;
    if (stable) break;
  }
  return static_cast<int>(std::set<int>(block.begin(), block.end()).size());
}

TEST(AutomatonTest, NoTwoStatesAreEquivalent) {
  std::vector<Grammar> grammars;
  for (const char* regex : {"(a|b)*abb", "[0-9]+(\\.[0-9]{1,3})?", "(ab|a)*(ba|b)*", "x{2,9}y*|z",
                            "(\\d{4}-\\d{2}-\\d{2})(, \\d{4}-\\d{2}-\\d{2}){0,4}"}) {
    grammars.push_back(*RegexToGrammar(regex));
  }
  for (const char* gbnf : {
           R"(root ::= "{" ws (pair ("," ws pair)*)? "}"
pair ::= str ws ":" ws value ws
value ::= str | [0-9]+ | root | "[" ws (value ws ("," ws value ws)*)? "]"
str ::= "\"" [^"\\]* "\""
ws ::= [ \t\n]*)",
           "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor ((\"*\" | \"/\") "
           "factor)*\nfactor ::= [0-9]{1,6} | \"(\" expr \")\"",
       }) {
    auto g = ParseGbnf(gbnf, nullptr);
    ASSERT_TRUE(g.ok()) << g.status();
    grammars.push_back(*g);
  }
  grammars.push_back(AnyJsonObjectGrammar());
  grammars.push_back(*JsonSchemaToGrammar(R"({"type": "object", "properties": {
      "a": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
      "b": {"anyOf": [{"type": "integer", "minimum": -5}, {"type": "null"}]}}, "required": ["b"]})"));
  for (const Grammar& g : grammars) {
    auto a = Automaton::Build(g, AutomatonLimits());
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(EquivalenceClasses(**a), (*a)->num_states());
  }
}

TEST(AutomatonTest, OnlyRecursiveRulesStayRules) {
  auto g = ParseGbnf(R"(
root ::= item ("," item)*
item ::= word | "[" root "]"
word ::= letter+
letter ::= [a-z]
)",
                     nullptr);
  ASSERT_TRUE(g.ok()) << g.status();
  auto a = Automaton::Build(*g, AutomatonLimits());
  ASSERT_TRUE(a.ok()) << a.status();
  // root and item recurse through each other; word and letter are inlined.
  ASSERT_EQ((*a)->num_rules(), 2);
  EXPECT_EQ((*a)->RuleName(0), "root");
  EXPECT_EQ((*a)->RuleName(1), "item");
  EXPECT_TRUE((*a)->RuleIsCalled(0));
  EXPECT_TRUE((*a)->RuleHasCalls(1));
  // Bytes that may follow `item`: "," and "]" (and the end).
  EXPECT_TRUE((*a)->MayFollowRule(1, ','));
  EXPECT_TRUE((*a)->MayFollowRule(1, ']'));
  EXPECT_FALSE((*a)->MayFollowRule(1, 'a'));
}

TEST(AutomatonTest, LimitsAndRefusals) {
  auto g = RegexToGrammar("(a|b)*a(a|b){20}");
  ASSERT_TRUE(g.ok());
  AutomatonLimits limits;
  limits.max_dfa_states = 5000;
  EXPECT_THAT(Automaton::Build(*g, limits).status().message(), HasSubstr("exceeds 5000 states"));
  auto r = RegexToGrammar("a{20000}");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(Automaton::Build(*r, AutomatonLimits()).status().message(),
              HasSubstr("repetition count 20000 exceeds the limit of 10000"));
  Grammar undefined;
  undefined.root = undefined.AddRule("root");
  undefined.rule_bodies[0] = RuleRef(undefined.AddRule("missing"));
  EXPECT_THAT(Automaton::Build(undefined, AutomatonLimits()).status().message(),
              HasSubstr("'missing' is used but not defined"));
  auto left = ParseGbnf("root ::= a \"x\" | \"y\"\na ::= b\nb ::= root \"z\"", nullptr);
  ASSERT_TRUE(left.ok());
  EXPECT_THAT(Automaton::Build(*left, AutomatonLimits()).status().message(),
              HasSubstr("left-recursive"));
  // Left recursion through a rule that can be empty is still left recursion.
  auto hidden = ParseGbnf("root ::= e root \"x\" | \"y\"\ne ::= \"\" | \"q\"", nullptr);
  ASSERT_TRUE(hidden.ok());
  EXPECT_THAT(Automaton::Build(*hidden, AutomatonLimits()).status().message(),
              HasSubstr("left-recursive"));
}

}  // namespace
}  // namespace tessera::runtime::structured
