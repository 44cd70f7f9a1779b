// A seeded randomized simulation: thousands of steps of submits, aborts, deadlines, sessions and
// completions over a KV cache small enough to force preemption, checking the engine's bookkeeping
// as it goes and, at the end, that nothing is left anywhere and outputs match solo runs.
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/testing/fake_model_runner.h"
#include "scheduler/engine.h"
#include "scheduler/engine_test_util.h"

namespace tessera::scheduler {
namespace {

using testing::Collect;
using testing::MakeMedia;
using testing::MakePrompt;
using testing::MakeRequest;
using testing::Result;
using testing::RunUntilDone;
using testing::SmallSpec;

constexpr int32_t kVocab = 512;

EngineOptions SimOptions() {
  EngineOptions o;
  o.start_loop_thread = false;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 64;
  o.max_context_length = 320;
  o.max_queue_length = 40;
  o.eos_token_ids = {3, 4, 5};
  o.max_sessions = 3;
  o.session_ttl = absl::Seconds(2);
  o.max_session_tokens = 200;
  return o;
}

struct Live {
  std::shared_ptr<RequestHandle> handle;
  Result result;
  GenerateRequest request;  // Copy, for the solo rerun.
  bool may_be_cut = false;  // Has a deadline or was aborted.
};

class SimulationTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SimulationTest, InvariantsHoldAndNothingLeaks) {
  std::mt19937_64 rng(GetParam());
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  ManualClock clock;
  FakeModelRunner runner(SmallSpec(60, 80), kVocab);
  auto engine_or = Engine::Create(SimOptions(), &runner, nullptr, &clock);
  ASSERT_TRUE(engine_or.ok()) << engine_or.status();
  Engine& engine = **engine_or;

  std::map<std::string, Live> live;
  std::vector<Live> done;
  std::vector<std::string> sessions;
  std::vector<std::pair<std::string, std::shared_ptr<RequestHandle>>> turns;
  int rejected = 0, next_id = 0;
  auto collect = [&] {
    for (auto it = live.begin(); it != live.end();) {
      if (Collect(it->second.handle.get(), &it->second.result)) {
        done.push_back(std::move(it->second));
        it = live.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = turns.begin(); it != turns.end();) {
      Result r;
      if (Collect(it->second.get(), &r)) {
        it = turns.erase(it);
      } else {
        ++it;
      }
    }
  };

  constexpr int kSteps = 3000;
  for (int step = 0; step < kSteps; ++step) {
    const int action = uniform(0, 99);
    if (action < 18) {
      const int shared = uniform(0, 3) * 20;
      runtime::Prompt p =
          MakePrompt(uniform(std::max(shared, 2), 150), shared, uniform(0, 1 << 20));
      if (uniform(0, 4) == 0 && p.size() > 40) {
        p.media.push_back({uniform(0, 10), MakeMedia(uniform(0, 1) ? runtime::MediaKind::kImage
                                                                   : runtime::MediaKind::kAudio,
                                                     uniform(1, 30), uniform(0, 3))});
      }
      GenerateRequest req = MakeRequest(absl::StrCat("q", next_id++), std::move(p), uniform(1, 40),
                                        uniform(0, 1) ? 0.0f : 0.7f, rng());
      req.priority = uniform(0, 2);
      req.cache_salt = uniform(0, 3) == 0 ? "other" : "";
      req.stopping.min_tokens = uniform(0, 3);
      Live l;
      if (uniform(0, 4) == 0) {
        req.deadline = clock.Now() + absl::Milliseconds(uniform(0, 300));
        l.may_be_cut = true;
      }
      l.request = req;
      auto h = engine.Submit(std::move(req));
      if (!h.ok()) {
        ASSERT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted) << h.status();
        ++rejected;
        continue;
      }
      l.handle = *h;
      live.emplace(l.request.request_id, std::move(l));
    } else if (action < 21 && !live.empty()) {
      auto it = std::next(live.begin(), uniform(0, static_cast<int>(live.size()) - 1));
      it->second.may_be_cut = true;
      absl::Status s = engine.Abort(it->first);
      ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kNotFound) << s;
    } else if (action < 38) {
      auto s = engine.OpenSession({});
      if (s.ok()) sessions.push_back(*s);
    } else if (action < 44 && !sessions.empty()) {
      const std::string& sid = sessions[uniform(0, static_cast<int>(sessions.size()) - 1)];
      absl::Status s = engine.AppendToSession(sid, MakePrompt(uniform(1, 30), 0, rng()).token_ids);
      // NotFound after a TTL expiry; InvalidArgument while replying; ResourceExhausted at the cap.
      ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kNotFound ||
                  s.code() == absl::StatusCode::kInvalidArgument ||
                  s.code() == absl::StatusCode::kResourceExhausted)
          << s;
    } else if (action < 47 && !sessions.empty()) {
      const std::string& sid = sessions[uniform(0, static_cast<int>(sessions.size()) - 1)];
      runtime::SamplingParams sp;
      sp.temperature = 0;
      StoppingParams st;
      st.max_tokens = uniform(1, 10);
      auto h = engine.GenerateInSession(sid, sp, st);
      if (h.ok()) turns.push_back({sid, *h});
    } else if (action < 48 && !sessions.empty()) {
      const size_t i = uniform(0, static_cast<int>(sessions.size()) - 1);
      engine.CloseSession(sessions[i]).IgnoreError();
      sessions.erase(sessions.begin() + i);
    }
    clock.Advance(absl::Milliseconds(uniform(0, 10)));
    engine.Step();
    collect();
    if (step % 50 == 0) ASSERT_TRUE(engine.CheckConsistency().ok()) << engine.CheckConsistency();
  }
  for (const auto& sid : sessions) engine.CloseSession(sid).IgnoreError();
  for (int i = 0; i < 100000 && (!live.empty() || !turns.empty()); ++i) {
    engine.Step();
    collect();
  }
  engine.Step();  // Applies the last closes.
  ASSERT_TRUE(live.empty());
  ASSERT_TRUE(turns.empty());
  ASSERT_TRUE(engine.CheckConsistency().ok()) << engine.CheckConsistency();
  const EngineStats stats = engine.Stats();
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.waiting, 0);
  EXPECT_EQ(stats.sessions, 0);
  for (const auto& g : stats.kv) EXPECT_EQ(g.used_blocks, 0) << g.name;
  EXPECT_GT(stats.preemptions, 0);
  EXPECT_GT(stats.prefix_hit_tokens, 0);
  int completed = 0, cut = 0;
  for (const Live& l : done) {
    ASSERT_TRUE(l.result.completion.has_value());
    EXPECT_TRUE(l.result.completion_last);
    const FinishReason reason = l.result.completion->reason;
    if (reason == FinishReason::kAbort) {
      EXPECT_TRUE(l.may_be_cut) << l.request.request_id;
      ++cut;
    } else {
      EXPECT_TRUE(reason == FinishReason::kStop || reason == FinishReason::kLength);
      ++completed;
    }
  }
  EXPECT_GT(completed, 100);
  EXPECT_GT(cut, 5);
  // Outputs of completed requests equal a solo run's, whatever happened around them.
  int checked = 0;
  for (const Live& l : done) {
    if (l.result.completion->reason == FinishReason::kAbort || checked >= 25) continue;
    ++checked;
    FakeModelRunner solo_runner(SmallSpec(60, 80), kVocab);
    auto solo = *Engine::Create(SimOptions(), &solo_runner, nullptr, &clock);
    GenerateRequest req = l.request;
    req.deadline = absl::InfiniteFuture();
    auto h = *solo->Submit(std::move(req));
    std::vector<Result> r;
    ASSERT_TRUE(RunUntilDone(solo.get(), {h}, &r));
    EXPECT_EQ(r[0].tokens, l.result.tokens) << l.request.request_id;
  }
  std::cout << "completed " << completed << " cut " << cut << " rejected " << rejected
            << " preemptions " << stats.preemptions << " steps " << stats.steps << " prefix hits "
            << stats.prefix_hit_tokens << "/" << stats.prefix_query_tokens << std::endl;
  RecordProperty("completed", completed);
  RecordProperty("rejected", rejected);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SimulationTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace tessera::scheduler
