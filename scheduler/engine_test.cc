#include "scheduler/engine.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/testing/fake_model_runner.h"
#include "scheduler/engine_test_util.h"

namespace tessera::scheduler {
namespace {

using testing::Collect;
using ::testing::HasSubstr;
using testing::MakeMedia;
using testing::MakePrompt;
using testing::MakeRequest;
using testing::Result;
using testing::RunUntilDone;
using testing::SmallSpec;

constexpr int32_t kVocab = 512;

EngineOptions ManualOptions() {
  EngineOptions o;
  o.start_loop_thread = false;
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 64;
  o.max_context_length = 1024;
  o.model_identity = "fake";
  return o;
}

struct Fixture {
  explicit Fixture(EngineOptions options = ManualOptions(), int32_t sliding_blocks = 256,
                   int32_t global_blocks = 512, const runtime::Tokenizer* tokenizer = nullptr)
      : runner(SmallSpec(sliding_blocks, global_blocks), kVocab) {
    auto e = Engine::Create(options, &runner, tokenizer, &clock, nullptr);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
  }
  Result Run(GenerateRequest r) {
    auto h = engine->Submit(std::move(r));
    EXPECT_TRUE(h.ok()) << h.status();
    std::vector<Result> results;
    EXPECT_TRUE(RunUntilDone(engine.get(), {*h}, &results));
    return results[0];
  }
  void ExpectAllFree() {
    EngineStats s = engine->Stats();
    EXPECT_EQ(s.running, 0);
    EXPECT_EQ(s.waiting, 0);
    for (const auto& g : s.kv) EXPECT_EQ(g.used_blocks, 0) << g.name;
  }
  ManualClock clock;
  FakeModelRunner runner;
  std::unique_ptr<Engine> engine;
};

// A mix: shared prefixes, greedy and seeded sampling, an image and audio.
std::vector<GenerateRequest> Mix() {
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    runtime::Prompt p = MakePrompt(40 + 13 * i, i % 3 == 0 ? 30 : 0, i);
    if (i % 4 == 1) p.media.push_back({5, MakeMedia(runtime::MediaKind::kImage, 12, 100 + i)});
    if (i % 4 == 2) p.media.push_back({20, MakeMedia(runtime::MediaKind::kAudio, 16, 200 + i)});
    auto r = MakeRequest(absl::StrCat("r", i), std::move(p), 20 + i, i % 2 ? 0.8f : 0.0f, 1000 + i);
    r.priority = i % 3;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

std::vector<Result> RunTogether(EngineOptions options, int32_t sliding_blocks,
                                int32_t global_blocks, EngineStats* stats) {
  Fixture f(options, sliding_blocks, global_blocks);
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (auto& r : Mix()) {
    auto h = f.engine->Submit(std::move(r));
    EXPECT_TRUE(h.ok()) << h.status();
    handles.push_back(*h);
  }
  std::vector<Result> results;
  EXPECT_TRUE(RunUntilDone(f.engine.get(), handles, &results));
  *stats = f.engine->Stats();
  f.ExpectAllFree();
  return results;
}

TEST(EngineTest, SameOutputAloneBatchedCachedAndAcrossPreemption) {
  std::vector<Result> alone;
  for (auto& r : Mix()) {
    Fixture f;
    alone.push_back(f.Run(std::move(r)));
    ASSERT_TRUE(alone.back().completion.has_value());
    EXPECT_EQ(alone.back().completion->reason, FinishReason::kLength);
  }
  EngineStats roomy, tight, uncached;
  std::vector<Result> batched = RunTogether(ManualOptions(), 256, 512, &roomy);
  // 60 global blocks = 240 tokens for 12 sequences of up to 214: preemption is certain.
  std::vector<Result> preempted = RunTogether(ManualOptions(), 40, 60, &tight);
  EngineOptions no_cache = ManualOptions();
  no_cache.enable_prefix_caching = false;
  std::vector<Result> without_cache = RunTogether(no_cache, 40, 60, &uncached);
  EXPECT_EQ(roomy.preemptions, 0);
  EXPECT_GT(tight.preemptions, 0);
  EXPECT_GT(uncached.preemptions, 0);
  EXPECT_GT(roomy.prefix_hit_tokens, 0);
  EXPECT_EQ(uncached.prefix_hit_tokens, 0);
  for (size_t i = 0; i < alone.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, alone[i].tokens) << i;
    EXPECT_EQ(preempted[i].tokens, alone[i].tokens) << i;
    EXPECT_EQ(without_cache[i].tokens, alone[i].tokens) << i;
    EXPECT_TRUE(preempted[i].completion_last);
  }
}

TEST(EngineTest, SecondRequestWithTheSamePrefixComputesOnlyNewTokens) {
  Fixture f;
  auto with_media = [](int32_t n, uint64_t image_hash) {
    runtime::Prompt p = MakePrompt(n, n, 0);
    p.media.push_back({10, MakeMedia(runtime::MediaKind::kImage, 20, image_hash)});
    p.media.push_back({50, MakeMedia(runtime::MediaKind::kAudio, 40, 77)});
    return p;
  };
  runtime::Prompt first = with_media(200, 1);
  Result a = f.Run(MakeRequest("a", first, 1));
  EXPECT_EQ(a.completion->usage.cached_prompt_tokens, 0);
  runtime::Prompt second = with_media(220, 1);
  // Same first 200 tokens (MakePrompt is a fixed stream), same media.
  ASSERT_TRUE(std::equal(first.token_ids.begin(), first.token_ids.end(), second.token_ids.begin()));
  const int64_t before = f.runner.rows_computed();
  Result b = f.Run(MakeRequest("b", second, 1));
  EXPECT_EQ(b.completion->usage.cached_prompt_tokens, 200);
  EXPECT_EQ(f.runner.rows_computed() - before, 20);
  // The hit is visible in Stats, in tokens.
  EngineStats s = f.engine->Stats();
  EXPECT_EQ(s.prefix_query_tokens, 420);
  EXPECT_EQ(s.prefix_hit_tokens, 200);
  // A different image at the same place shares only the tokens before it (block boundary 8).
  const int64_t before_c = f.runner.rows_computed();
  Result c = f.Run(MakeRequest("c", with_media(220, 2), 1));
  EXPECT_EQ(c.completion->usage.cached_prompt_tokens, 8);
  EXPECT_EQ(f.runner.rows_computed() - before_c, 212);
  // And the output matches a cold run.
  Fixture cold;
  EXPECT_EQ(cold.Run(MakeRequest("b", with_media(220, 1), 1)).tokens, b.tokens);
  f.ExpectAllFree();
}

TEST(EngineTest, DifferentCacheSaltSharesNothing) {
  Fixture f;
  auto r1 = MakeRequest("a", MakePrompt(100, 100, 0), 1);
  r1.cache_salt = "alice";
  f.Run(std::move(r1));
  auto r2 = MakeRequest("b", MakePrompt(100, 100, 0), 1);
  r2.cache_salt = "bob";
  const int64_t before = f.runner.rows_computed();
  Result b = f.Run(std::move(r2));
  EXPECT_EQ(b.completion->usage.cached_prompt_tokens, 0);
  EXPECT_EQ(f.runner.rows_computed() - before, 100);
  auto r3 = MakeRequest("c", MakePrompt(100, 100, 0), 1);
  r3.cache_salt = "alice";
  EXPECT_EQ(f.Run(std::move(r3)).completion->usage.cached_prompt_tokens, 96);
}

TEST(EngineTest, StopIdsMinTokensAndIgnoreEos) {
  std::vector<int32_t> free_run;
  {
    Fixture f;
    free_run = f.Run(MakeRequest("a", MakePrompt(30, 0, 1), 12)).tokens;
    ASSERT_EQ(free_run.size(), 12u);
  }
  const int32_t eos = free_run[3];
  EngineOptions o = ManualOptions();
  o.eos_token_ids = {eos};
  {
    Fixture f(o);
    Result r = f.Run(MakeRequest("a", MakePrompt(30, 0, 1), 12));
    EXPECT_EQ(r.completion->reason, FinishReason::kStop);
    EXPECT_EQ(r.completion->stop_token, eos);
    // The stop id is the last token (first occurrence in the free run).
    const auto first = std::find(free_run.begin(), free_run.end(), eos) - free_run.begin();
    EXPECT_EQ(r.tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + first + 1));
  }
  {
    Fixture f(o);
    auto req = MakeRequest("a", MakePrompt(30, 0, 1), 12);
    req.stopping.min_tokens = 6;
    Result r = f.Run(std::move(req));
    ASSERT_GE(r.tokens.size(), 6u);
    for (int i = 0; i < 5; ++i) EXPECT_NE(r.tokens[i], eos) << i;  // Banned before min_tokens.
  }
  {
    Fixture f(o);
    auto req = MakeRequest("a", MakePrompt(30, 0, 1), 12);
    req.stopping.ignore_eos = true;
    Result r = f.Run(std::move(req));
    EXPECT_EQ(r.tokens, free_run);
    EXPECT_EQ(r.completion->reason, FinishReason::kLength);
  }
  {
    Fixture f;  // A request's own stop id.
    auto req = MakeRequest("a", MakePrompt(30, 0, 1), 12);
    req.stopping.stop_token_ids = {free_run[5]};
    Result r = f.Run(std::move(req));
    EXPECT_EQ(r.completion->stop_token, free_run[5]);
  }
}

TEST(EngineTest, StopStringsAreHeldBackAndNeverEmitted) {
  testing::LetterTokenizer tok;
  Fixture probe(ManualOptions(), 256, 512, &tok);
  Result free_run = probe.Run(MakeRequest("a", MakePrompt(30, 0, 2), 12));
  ASSERT_EQ(free_run.text.size(), 12u);
  const std::string stop = free_run.text.substr(6, 3);
  const size_t at = free_run.text.find(stop);
  Fixture f(ManualOptions(), 256, 512, &tok);
  auto req = MakeRequest("a", MakePrompt(30, 0, 2), 12);
  req.stopping.stop_strings = {stop, "zzzzzzzz"};
  Result r = f.Run(std::move(req));
  EXPECT_EQ(r.completion->reason, FinishReason::kStop);
  EXPECT_EQ(r.completion->stop_string, stop);
  EXPECT_EQ(r.text, free_run.text.substr(0, at));
  EXPECT_EQ(r.tokens.size(), at + stop.size());
  // Without a match, everything held back is released at the end.
  Fixture g(ManualOptions(), 256, 512, &tok);
  auto req2 = MakeRequest("a", MakePrompt(30, 0, 2), 12);
  req2.stopping.stop_strings = {free_run.text.substr(11, 1) + "#"};
  EXPECT_EQ(g.Run(std::move(req2)).text, free_run.text);
}

TEST(EngineTest, AbortAndDeadlineFreeEverythingAtTheNextStep) {
  Fixture f;
  auto a = *f.engine->Submit(MakeRequest("a", MakePrompt(200, 0, 1), 100));
  auto req = MakeRequest("d", MakePrompt(50, 0, 2), 100);
  req.deadline = f.clock.Now() + absl::Seconds(1);
  auto d = *f.engine->Submit(std::move(req));
  auto c = *f.engine->Submit(MakeRequest("c", MakePrompt(50, 0, 3), 5));
  for (int i = 0; i < 6; ++i) f.engine->Step();
  EXPECT_GT(f.engine->Stats().kv[1].used_blocks, 0);
  ASSERT_TRUE(f.engine->Abort("a").ok());
  EXPECT_EQ(f.engine->Abort("nope").code(), absl::StatusCode::kNotFound);
  f.clock.Advance(absl::Seconds(2));
  std::vector<Result> results;
  ASSERT_TRUE(RunUntilDone(f.engine.get(), {a, d, c}, &results));
  EXPECT_EQ(results[0].completion->reason, FinishReason::kAbort);
  EXPECT_EQ(results[0].completion->status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(results[1].completion->reason, FinishReason::kAbort);
  EXPECT_EQ(results[1].completion->status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(results[2].completion->reason, FinishReason::kLength);
  f.ExpectAllFree();
  // The id is free again.
  EXPECT_TRUE(f.engine->Submit(MakeRequest("a", MakePrompt(5, 0, 1), 1)).ok());
}

TEST(EngineTest, LowerPriorityValueRunsFirstThenArrival) {
  EngineOptions o = ManualOptions();
  o.max_num_seqs = 1;
  Fixture f(o);
  auto late_low = *f.engine->Submit(MakeRequest("low", MakePrompt(10, 0, 1), 3));
  auto req = MakeRequest("high", MakePrompt(10, 0, 2), 3);
  req.priority = -1;
  auto high = *f.engine->Submit(std::move(req));
  auto same = *f.engine->Submit(MakeRequest("same", MakePrompt(10, 0, 3), 3));
  std::vector<std::string> order;
  std::vector<Result> results(3);
  const std::vector<std::shared_ptr<RequestHandle>> hs = {late_low, high, same};
  for (int step = 0; step < 100 && order.size() < 3; ++step) {
    f.engine->Step();
    for (size_t i = 0; i < hs.size(); ++i) {
      if (!results[i].completion && Collect(hs[i].get(), &results[i])) {
        order.push_back(hs[i]->request_id());
      }
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{"high", "low", "same"}));
  // Queue time reflects the wait behind the others.
  EXPECT_EQ(results[1].completion->usage.queue_time, absl::ZeroDuration());
}

TEST(EngineTest, AdmissionLimitsNameTheLimit) {
  EngineOptions o = ManualOptions();
  o.max_queue_length = 2;
  Fixture f(o);
  EXPECT_TRUE(f.engine->Submit(MakeRequest("a", MakePrompt(10, 0, 1), 1)).ok());
  EXPECT_TRUE(f.engine->Submit(MakeRequest("b", MakePrompt(10, 0, 1), 1)).ok());
  auto full = f.engine->Submit(MakeRequest("c", MakePrompt(10, 0, 1), 1));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("max_queue_length"));
  auto dup = f.engine->Submit(MakeRequest("a", MakePrompt(10, 0, 1), 1));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  auto long_prompt = f.engine->Submit(MakeRequest("x", MakePrompt(1024, 0, 1), 1));
  EXPECT_EQ(long_prompt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(long_prompt.status().message(), HasSubstr("context length is 1024"));
  runtime::Prompt p = MakePrompt(100, 0, 1);
  p.media.push_back({2, MakeMedia(runtime::MediaKind::kAudio, 65, 1)});
  auto big_media = f.engine->Submit(MakeRequest("y", p, 1));
  EXPECT_EQ(big_media.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big_media.status().message(), HasSubstr("max_num_batched_tokens = 64"));
  EXPECT_EQ(f.engine->Submit(MakeRequest("z", runtime::Prompt{}, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EngineTest, AFailedStepFailsItsRequestsAndTheEngineKeepsServing) {
  Fixture f;
  constexpr int32_t kPoison = 2;  // MakePrompt never emits ids below 3.
  f.runner.SetFailureHook([](const runtime::BatchPlan& plan) {
    for (const auto& s : plan.seqs) {
      for (int32_t t : s.token_ids) {
        if (t == kPoison) return absl::InternalError("poisoned row");
      }
    }
    return absl::OkStatus();
  });
  auto a = *f.engine->Submit(MakeRequest("a", MakePrompt(20, 0, 1), 10));
  f.engine->Step();
  runtime::Prompt bad = MakePrompt(20, 0, 2);
  bad.token_ids[7] = kPoison;
  auto p = *f.engine->Submit(MakeRequest("p", bad, 10));
  std::vector<Result> results;
  ASSERT_TRUE(RunUntilDone(f.engine.get(), {a, p}, &results));
  for (const auto& r : results) {
    EXPECT_EQ(r.completion->reason, FinishReason::kError);
    EXPECT_THAT(r.completion->status.message(), HasSubstr("poisoned row"));
  }
  f.ExpectAllFree();
  Fixture cold;
  EXPECT_EQ(f.Run(MakeRequest("c", MakePrompt(20, 0, 3), 10)).tokens,
            cold.Run(MakeRequest("c", MakePrompt(20, 0, 3), 10)).tokens);
}

TEST(EngineTest, SessionKeepsItsContextAndMatchesAPlainRequest) {
  EngineOptions o = ManualOptions();
  o.session_ttl = absl::Minutes(1);
  Fixture f(o);
  auto sid = f.engine->OpenSession({});
  ASSERT_TRUE(sid.ok());
  runtime::Prompt p1 = MakePrompt(50, 0, 4);
  runtime::Prompt audio = MakePrompt(30, 0, 5);
  auto item = MakeMedia(runtime::MediaKind::kAudio, 24, 9);
  ASSERT_TRUE(f.engine->AppendToSession(*sid, p1.token_ids).ok());
  ASSERT_TRUE(f.engine->AppendToSession(*sid, audio.token_ids, {{3, item}}).ok());
  while (f.engine->Step()) {
  }
  // Prefilled as it arrived: all but the last token.
  EXPECT_EQ(f.runner.rows_computed(), 79);
  runtime::SamplingParams greedy;
  greedy.temperature = 0;
  StoppingParams stop;
  stop.max_tokens = 6;
  auto h1 = f.engine->GenerateInSession(*sid, greedy, stop);
  ASSERT_TRUE(h1.ok()) << h1.status();
  EXPECT_EQ(f.engine->AppendToSession(*sid, {5}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<Result> r1;
  ASSERT_TRUE(RunUntilDone(f.engine.get(), {*h1}, &r1));
  EXPECT_EQ(r1[0].completion->usage.cached_prompt_tokens, 79);
  EXPECT_EQ(r1[0].tokens.size(), 6u);
  EXPECT_EQ(f.runner.rows_computed(), 79 + 1 + 5);

  // Second turn: only the new tokens (and the last reply token) are computed.
  runtime::Prompt p2 = MakePrompt(12, 0, 6);
  ASSERT_TRUE(f.engine->AppendToSession(*sid, p2.token_ids).ok());
  auto h2 = f.engine->GenerateInSession(*sid, greedy, stop);
  std::vector<Result> r2;
  ASSERT_TRUE(RunUntilDone(f.engine.get(), {*h2}, &r2));
  EXPECT_EQ(f.runner.rows_computed(), 85 + 13 + 5);

  // The same context as one plain request gives the same reply.
  runtime::Prompt whole;
  whole.token_ids = p1.token_ids;
  whole.token_ids.insert(whole.token_ids.end(), audio.token_ids.begin(), audio.token_ids.end());
  whole.media.push_back({53, item});
  whole.token_ids.insert(whole.token_ids.end(), r1[0].tokens.begin(), r1[0].tokens.end());
  whole.token_ids.insert(whole.token_ids.end(), p2.token_ids.begin(), p2.token_ids.end());
  Fixture cold;
  EXPECT_EQ(cold.Run(MakeRequest("x", whole, 6)).tokens, r2[0].tokens);

  // Closing puts its blocks in the prefix cache: the plain request now hits.
  ASSERT_TRUE(f.engine->CloseSession(*sid).ok());
  f.engine->Step();
  f.ExpectAllFree();
  EXPECT_GT(f.engine->Stats().kv[1].cached_blocks, 0);
  Result warm = f.Run(MakeRequest("x", whole, 6));
  EXPECT_EQ(warm.tokens, r2[0].tokens);
  EXPECT_EQ(warm.completion->usage.cached_prompt_tokens, 96);
  EXPECT_EQ(f.engine->AppendToSession(*sid, {5}).code(), absl::StatusCode::kNotFound);
}

// The session is idle again before its reply's Completion is delivered: input for the next turn
// sent the moment the Completion is taken is accepted, on the engine thread (inside the
// notification) and on another thread alike.
TEST(EngineTest, AppendingRightAfterTheRepliesCompletionSucceeds) {
  Fixture f;
  auto sid = f.engine->OpenSession({});
  ASSERT_TRUE(sid.ok());
  ASSERT_TRUE(f.engine->AppendToSession(*sid, MakePrompt(20, 0, 1).token_ids).ok());
  runtime::SamplingParams greedy;
  greedy.temperature = 0;
  StoppingParams stop;
  stop.max_tokens = 3;
  auto h1 = f.engine->GenerateInSession(*sid, greedy, stop);
  ASSERT_TRUE(h1.ok()) << h1.status();
  absl::Status in_notify = absl::UnknownError("the Completion never arrived");
  Engine* engine = f.engine.get();
  RequestHandle* handle = h1->get();
  const std::string id = *sid;
  (*h1)->SetNotify([&, engine, handle, id] {
    std::vector<RequestEvent> events;
    handle->Drain(&events);
    for (const RequestEvent& e : events) {
      if (std::holds_alternative<Completion>(e)) in_notify = engine->AppendToSession(id, {7, 8});
    }
  });
  while (f.engine->Step()) {
  }
  EXPECT_TRUE(in_notify.ok()) << in_notify;

  // With the loop thread: the caller takes the Completion, then appends at once.
  FakeModelRunner runner(SmallSpec(256, 512), kVocab);
  EngineOptions o = ManualOptions();
  o.start_loop_thread = true;
  auto threaded = *Engine::Create(o, &runner, nullptr);
  auto s2 = threaded->OpenSession({});
  ASSERT_TRUE(s2.ok());
  for (int turn = 0; turn < 20; ++turn) {
    ASSERT_TRUE(threaded->AppendToSession(*s2, MakePrompt(5, 0, turn).token_ids).ok()) << turn;
    auto h = threaded->GenerateInSession(*s2, greedy, stop);
    ASSERT_TRUE(h.ok()) << h.status();
    RequestEvent e;
    while ((*h)->Next(&e, absl::Seconds(20)) && !std::holds_alternative<Completion>(e)) {
    }
    ASSERT_TRUE(std::holds_alternative<Completion>(e)) << turn;
  }
}

TEST(EngineTest, SessionTtlAndTokenCap) {
  EngineOptions o = ManualOptions();
  o.session_ttl = absl::Seconds(30);
  Fixture f(o);
  SessionOptions so;
  so.session_id = "s";
  so.max_tokens = 40;
  ASSERT_TRUE(f.engine->OpenSession(so).ok());
  EXPECT_EQ(f.engine->OpenSession(so).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(f.engine->AppendToSession("s", MakePrompt(30, 0, 1).token_ids).ok());
  auto over = f.engine->AppendToSession("s", MakePrompt(10, 0, 1).token_ids);
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.message(), HasSubstr("limit is 40"));
  f.engine->Step();
  EXPECT_EQ(f.engine->Stats().sessions, 1);
  EXPECT_GT(f.engine->Stats().kv[1].used_blocks, 0);
  f.clock.Advance(absl::Seconds(31));
  f.engine->Step();
  EXPECT_EQ(f.engine->Stats().sessions, 0);
  f.ExpectAllFree();
  EXPECT_EQ(f.engine->AppendToSession("s", {5}).code(), absl::StatusCode::kNotFound);
}

class RecordingObserver : public EngineObserver {
 public:
  void OnRequestFinished(const RequestTimings& t) override { finished.push_back(t); }
  void OnStep(int32_t prefill, int32_t decode, absl::Duration) override {
    prefill_tokens += prefill;
    decode_tokens += decode;
  }
  std::vector<RequestTimings> finished;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
};

// Advances the manual clock by 10 ms per model step.
class SlowRunner : public FakeModelRunner {
 public:
  SlowRunner(ManualClock* clock) : FakeModelRunner(SmallSpec(256, 512), kVocab), clock_(clock) {}
  absl::Status Execute(const runtime::BatchPlan& plan, runtime::StepOutput* out) override {
    clock_->Advance(absl::Milliseconds(10));
    return FakeModelRunner::Execute(plan, out);
  }
  ManualClock* clock_;
};

TEST(EngineTest, TimingsReachTheObserver) {
  ManualClock clock;
  SlowRunner runner(&clock);
  RecordingObserver obs;
  auto engine = *Engine::Create(ManualOptions(), &runner, nullptr, &clock, &obs);
  auto h = *engine->Submit(MakeRequest("a", MakePrompt(100, 0, 1), 5));
  clock.Advance(absl::Milliseconds(30));  // Queued for 30 ms.
  std::vector<Result> results;
  ASSERT_TRUE(RunUntilDone(engine.get(), {h}, &results));
  ASSERT_EQ(obs.finished.size(), 1u);
  const RequestTimings& t = obs.finished[0];
  EXPECT_EQ(t.queue_time, absl::Milliseconds(30));
  // 100 tokens at 64 per step: 2 prefill steps, then 4 decode steps.
  EXPECT_EQ(t.prefill_time, absl::Milliseconds(20));
  EXPECT_EQ(t.time_to_first_token, absl::Milliseconds(50));
  EXPECT_EQ(t.decode_time, absl::Milliseconds(40));
  EXPECT_EQ(t.inter_token_latencies, std::vector<absl::Duration>(4, absl::Milliseconds(10)));
  EXPECT_EQ(t.e2e_time, absl::Milliseconds(90));
  EXPECT_EQ(obs.prefill_tokens, 100);
  EXPECT_EQ(obs.decode_tokens, 4);
  EXPECT_EQ(results[0].completion->usage.time_to_first_token, absl::Milliseconds(50));
}

TEST(EngineTest, LoopThreadServesConcurrentCallers) {
  std::vector<Result> manual;
  {
    Fixture f;
    std::vector<std::shared_ptr<RequestHandle>> hs;
    for (auto& r : Mix()) hs.push_back(*f.engine->Submit(std::move(r)));
    ASSERT_TRUE(RunUntilDone(f.engine.get(), hs, &manual));
  }
  FakeModelRunner runner(SmallSpec(40, 60), kVocab);
  EngineOptions o = ManualOptions();
  o.start_loop_thread = true;
  auto engine = *Engine::Create(o, &runner, nullptr);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (auto& r : Mix()) hs.push_back(*engine->Submit(std::move(r)));
  for (size_t i = 0; i < hs.size(); ++i) {
    Result r;
    RequestEvent e;
    while (hs[i]->Next(&e, absl::Seconds(20))) {
      if (auto* d = std::get_if<TokenDelta>(&e)) {
        r.tokens.insert(r.tokens.end(), d->token_ids.begin(), d->token_ids.end());
      } else {
        r.completion = std::get<Completion>(e);
      }
    }
    ASSERT_TRUE(r.completion.has_value()) << i;
    EXPECT_EQ(r.tokens, manual[i].tokens) << i;
  }
}

TEST(EngineTest, ShutdownAbortsLiveRequests) {
  FakeModelRunner runner(SmallSpec(256, 512), kVocab);
  auto engine = *Engine::Create(ManualOptions(), &runner, nullptr);
  auto h = *engine->Submit(MakeRequest("a", MakePrompt(10, 0, 1), 5));
  engine.reset();
  Result r;
  ASSERT_TRUE(Collect(h.get(), &r));
  EXPECT_EQ(r.completion->reason, FinishReason::kAbort);
  EXPECT_EQ(r.completion->status.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tessera::scheduler
