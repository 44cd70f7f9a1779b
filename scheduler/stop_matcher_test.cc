#include "scheduler/stop_matcher.h"

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

TEST(StopStringMatcherTest, NoStopsPassesThrough) {
  StopStringMatcher m({});
  std::optional<std::string> matched;
  EXPECT_EQ(m.Append("abc", &matched), "abc");
  EXPECT_FALSE(matched);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringMatcherTest, HoldsPossibleBeginningAndNeverEmitsTheStop) {
  StopStringMatcher m({"END"});
  std::optional<std::string> matched;
  EXPECT_EQ(m.Append("hello E", &matched), "hello ");
  EXPECT_EQ(m.Append("N", &matched), "");
  EXPECT_FALSE(matched);
  EXPECT_EQ(m.Append("Dless", &matched), "");
  ASSERT_TRUE(matched);
  EXPECT_EQ(*matched, "END");
}

TEST(StopStringMatcherTest, FalseStartIsReleased) {
  StopStringMatcher m({"END"});
  std::optional<std::string> matched;
  EXPECT_EQ(m.Append("EN", &matched), "");
  EXPECT_EQ(m.Append("x", &matched), "ENx");
  EXPECT_EQ(m.Append("E", &matched), "");
  EXPECT_EQ(m.Flush(), "E");
  EXPECT_FALSE(matched);
}

TEST(StopStringMatcherTest, EarliestOfSeveralWinsAndTextBeforeItIsEmitted) {
  StopStringMatcher m({"cd", "bcdx", "\n\n"});
  std::optional<std::string> matched;
  EXPECT_EQ(m.Append("a", &matched), "a");
  EXPECT_EQ(m.Append("bc", &matched), "");  // "bc" may begin "bcdx".
  EXPECT_EQ(m.Append("de", &matched), "b");
  ASSERT_TRUE(matched);
  EXPECT_EQ(*matched, "cd");
}

TEST(StopStringMatcherTest, MultibyteStop) {
  StopStringMatcher m({"\xC3\xA9t\xC3\xA9"});  // "été"
  std::optional<std::string> matched;
  EXPECT_EQ(m.Append("l\xC3\xA9", &matched), "l");
  EXPECT_EQ(m.Append("t\xC3\xA9!", &matched), "");
  EXPECT_TRUE(matched);
}

}  // namespace
}  // namespace tessera::scheduler
