#include "model/stop_condition.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace st {
namespace {

using ::testing::ElementsAre;

constexpr int32_t kImEnd = 151645;

// Feeds `pieces` as ordinary tokens (ids 1, 2, ...) until a finish; returns
// the text of every step, and the final step in *last.
std::vector<std::string> FeedAll(StopChecker& checker, const std::vector<std::string>& pieces,
                                 StopStep* last = nullptr) {
  std::vector<std::string> texts;
  int32_t id = 1;
  for (const std::string& piece : pieces) {
    StopStep step = checker.Feed(id++, piece);
    texts.push_back(step.text);
    if (last != nullptr) *last = step;
    if (step.finish != FinishReason::kNone) break;
  }
  return texts;
}

TEST(StopCheckerTest, WithoutStopsTextPassesThroughAtOnce) {
  StopChecker checker({}, {}, 0);
  StopStep last;
  EXPECT_THAT(FeedAll(checker, {"Hello", ",", " world"}, &last),
              ElementsAre("Hello", ",", " world"));
  EXPECT_EQ(last.finish, FinishReason::kNone);
  EXPECT_EQ(checker.Flush(), "");
  EXPECT_EQ(checker.num_tokens(), 3);
}

TEST(StopCheckerTest, StopStringSplitAcrossTokens) {
  StopChecker checker({"</s>"}, {}, 0);
  StopStep last;
  EXPECT_THAT(FeedAll(checker, {"Hi <", "/", "s> more", "never fed"}, &last),
              ElementsAre("Hi ", "", ""));
  EXPECT_EQ(last.finish, FinishReason::kStop);
  EXPECT_EQ(last.stop_string_index, 0);
  EXPECT_EQ(last.stop_token_id, -1);
  EXPECT_EQ(checker.finish_reason(), FinishReason::kStop);
  EXPECT_EQ(checker.Flush(), "");
}

TEST(StopCheckerTest, TextBeforeStopStringInSamePieceIsEmitted) {
  StopChecker checker({"STOP"}, {}, 0);
  StopStep last;
  EXPECT_THAT(FeedAll(checker, {"abc STOP def"}, &last), ElementsAre("abc "));
  EXPECT_EQ(last.finish, FinishReason::kStop);
}

TEST(StopCheckerTest, StopStringAtStart) {
  StopChecker whole({"STOP"}, {}, 0);
  EXPECT_THAT(FeedAll(whole, {"STOP", "x"}), ElementsAre(""));
  EXPECT_EQ(whole.finish_reason(), FinishReason::kStop);

  StopChecker split({"STOP"}, {}, 0);
  EXPECT_THAT(FeedAll(split, {"ST", "OP", "x"}), ElementsAre("", ""));
  EXPECT_EQ(split.finish_reason(), FinishReason::kStop);
}

TEST(StopCheckerTest, HeldTextIsReleasedWhenTheMatchFails) {
  StopChecker checker({"STOP"}, {}, 0);
  EXPECT_THAT(FeedAll(checker, {"ST", "ART", "S", "TO", "p"}),
              ElementsAre("", "START", "", "", "STOp"));
  EXPECT_EQ(checker.finish_reason(), FinishReason::kNone);
}

TEST(StopCheckerTest, HoldsOnlyTheLongestPossiblePrefix) {
  StopChecker checker({"abcd"}, {}, 0);
  // "abcabc": "abcab" and friends are not prefixes; "abc" is.
  EXPECT_THAT(FeedAll(checker, {"abc", "abc", "d"}), ElementsAre("", "abc", ""));
  EXPECT_EQ(checker.finish_reason(), FinishReason::kStop);
}

TEST(StopCheckerTest, OverlappingPrefixes) {
  // "aab" self-overlaps: after "aaa" only the last "aa" may still start it.
  StopChecker one({"aab"}, {}, 0);
  EXPECT_THAT(FeedAll(one, {"a", "a", "a", "b"}), ElementsAre("", "", "a", ""));
  EXPECT_EQ(one.finish_reason(), FinishReason::kStop);

  // "ab" and "aab" both match "xaab"; the earliest occurrence ("aab" at 1)
  // decides what is emitted, whatever the list order.
  StopStep last;
  StopChecker two({"ab", "aab"}, {}, 0);
  EXPECT_THAT(FeedAll(two, {"x", "a", "a", "b"}, &last), ElementsAre("x", "", "", ""));
  EXPECT_EQ(last.stop_string_index, 1);

  // Only "ab": the first "a" turns out to be text.
  StopChecker three({"ab"}, {}, 0);
  EXPECT_THAT(FeedAll(three, {"x", "a", "a", "b"}, &last), ElementsAre("x", "", "a", ""));
  EXPECT_EQ(last.stop_string_index, 0);

  // Same start position: the first listed is reported.
  StopChecker four({"ab", "abc"}, {}, 0);
  EXPECT_THAT(FeedAll(four, {"abc"}, &last), ElementsAre(""));
  EXPECT_EQ(last.stop_string_index, 0);
}

TEST(StopCheckerTest, StopTokenFinishesWithoutItsPiece) {
  StopChecker checker({}, {0, kImEnd}, 0);
  EXPECT_EQ(checker.Feed(9707, "Hello").text, "Hello");
  StopStep step = checker.Feed(kImEnd, "<|im_end|>");
  EXPECT_EQ(step.text, "");
  EXPECT_EQ(step.finish, FinishReason::kStop);
  EXPECT_EQ(step.stop_token_id, kImEnd);
  EXPECT_EQ(step.stop_string_index, -1);
}

TEST(StopCheckerTest, StopTokenReleasesHeldText) {
  StopChecker checker({"###"}, {kImEnd}, 0);
  EXPECT_EQ(checker.Feed(1, "x#").text, "x");
  StopStep step = checker.Feed(kImEnd, "");
  EXPECT_EQ(step.text, "#");
  EXPECT_EQ(step.finish, FinishReason::kStop);
  EXPECT_EQ(checker.Flush(), "");
}

// A hidden token (a control token, shown as nothing) is matched against the
// stop strings by its own text; otherwise it shows nothing and keeps the held
// text, and it counts toward max_tokens.
TEST(StopCheckerTest, HiddenTokenStopsOnItsTextAndOtherwiseShowsNothing) {
  StopChecker checker({"<|im_start|>", "###"}, {kImEnd}, 0);
  EXPECT_EQ(checker.Feed(1, "a#").text, "a");
  StopStep step = checker.FeedHidden(2, "<|endoftext|>");  // no stop string in it
  EXPECT_EQ(step.finish, FinishReason::kNone);
  EXPECT_EQ(step.text, "");
  EXPECT_EQ(checker.Feed(3, "##").finish, FinishReason::kStop) << "held '#' then '##'";
  StopChecker on_text({"<|im_start|>"}, {kImEnd}, 0);
  EXPECT_EQ(on_text.Feed(1, "hi<").text, "hi");
  step = on_text.FeedHidden(2, "<|im_start|>");
  EXPECT_EQ(step.finish, FinishReason::kStop);
  EXPECT_EQ(step.stop_string_index, 0);
  EXPECT_EQ(step.text, "<") << "the held text comes out";
  StopChecker by_token({}, {kImEnd}, 0);
  EXPECT_EQ(by_token.FeedHidden(kImEnd, "<|im_end|>").stop_token_id, kImEnd);
  StopChecker by_length({"x"}, {kImEnd}, 2);
  EXPECT_EQ(by_length.Feed(1, "a").finish, FinishReason::kNone);
  EXPECT_EQ(by_length.FeedHidden(2, "<|im_start|>").finish, FinishReason::kLength);
}

TEST(StopCheckerTest, MaxTokensFinishesWithLengthAndAllText) {
  StopChecker checker({"STOP"}, {kImEnd}, 3);
  StopStep last;
  EXPECT_THAT(FeedAll(checker, {"a", "b", "ST", "OP"}, &last), ElementsAre("a", "b", "ST"));
  EXPECT_EQ(last.finish, FinishReason::kLength);
  EXPECT_EQ(checker.num_tokens(), 3);
  EXPECT_EQ(checker.Flush(), "");
}

TEST(StopCheckerTest, StopOnTheLastAllowedTokenIsStopNotLength) {
  StopChecker by_string({"STOP"}, {kImEnd}, 2);
  StopStep last;
  EXPECT_THAT(FeedAll(by_string, {"a", "STOP"}, &last), ElementsAre("a", ""));
  EXPECT_EQ(last.finish, FinishReason::kStop);

  StopChecker by_token({}, {kImEnd}, 2);
  by_token.Feed(1, "a");
  EXPECT_EQ(by_token.Feed(kImEnd, "").finish, FinishReason::kStop);
}

TEST(StopCheckerTest, NonPositiveMaxTokensMeansNoLimit) {
  StopChecker checker({}, {}, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(checker.Feed(1, "x").finish, FinishReason::kNone);
}

TEST(StopCheckerTest, FlushReturnsHeldTextOnce) {
  StopChecker checker({"</s>"}, {}, 0);
  EXPECT_EQ(checker.Feed(1, "abc<").text, "abc");
  EXPECT_EQ(checker.Feed(2, "/").text, "");
  EXPECT_EQ(checker.Flush(), "</");
  EXPECT_EQ(checker.Flush(), "");
}

TEST(StopCheckerTest, FeedAfterFinishReturnsNothingAndTheSameReason) {
  StopChecker checker({"x"}, {}, 0);
  EXPECT_EQ(checker.Feed(1, "ax").finish, FinishReason::kStop);
  StopStep again = checker.Feed(2, "more");
  EXPECT_EQ(again.text, "");
  EXPECT_EQ(again.finish, FinishReason::kStop);
  EXPECT_EQ(again.stop_string_index, 0);
  EXPECT_EQ(checker.num_tokens(), 1);
}

TEST(StopCheckerTest, EmptyStopStringsAreIgnored) {
  StopChecker checker({"", "END"}, {}, 0);
  StopStep last;
  EXPECT_THAT(FeedAll(checker, {"ab", "c END"}, &last), ElementsAre("ab", "c "));
  EXPECT_EQ(last.stop_string_index, 1);
}

TEST(StopCheckerTest, MultiByteStopStringSplitInsideACharacter) {
  // "。" is E3 80 82; a byte-level tokenizer may split it.
  StopChecker checker({"。"}, {}, 0);
  EXPECT_THAT(FeedAll(checker, {"好\xE3", "\x80\x82!"}), ElementsAre("好", ""));
  EXPECT_EQ(checker.finish_reason(), FinishReason::kStop);
}

TEST(FinishReasonTest, OpenAiNames) {
  EXPECT_EQ(FinishReasonName(FinishReason::kNone), "");
  EXPECT_EQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_EQ(FinishReasonName(FinishReason::kLength), "length");
}

}  // namespace
}  // namespace st
