#include "scheduler/scheduler.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

struct SeqSetup {
  std::string id;
  int32_t priority = 0;
  int32_t tokens = 0;    // Context length (prompt + output).
  int32_t computed = 0;  // > 0: running, holding blocks for [0, computed).
  std::vector<std::pair<int32_t, int32_t>> media;  // (start, rows) image runs.
};

struct Expected {
  std::string id;
  int32_t start;
  int32_t num_tokens;
  bool sample;
};

struct PolicyCase {
  std::string name;
  int32_t num_blocks;  // One global group, block size 4.
  int32_t budget;
  int32_t max_seqs;
  std::vector<SeqSetup> seqs;  // Arrival order = index.
  std::vector<Expected> scheduled;
  std::vector<std::string> preempted;
};

class PolicyTest : public ::testing::TestWithParam<PolicyCase> {};

TEST_P(PolicyTest, SchedulesExactly) {
  const PolicyCase& c = GetParam();
  runtime::KvCacheSpec spec;
  runtime::KvGroupSpec g;
  g.name = "global";
  g.block_size = 4;
  g.num_blocks = c.num_blocks;
  spec.groups = {g};
  KvCacheManager kv(spec, /*enable_prefix_caching=*/false);
  Scheduler sched({c.max_seqs, c.budget}, &kv);
  std::vector<std::unique_ptr<Sequence>> seqs;
  auto item = std::make_shared<runtime::MediaItem>();
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    const SeqSetup& s = c.seqs[i];
    auto seq = std::make_unique<Sequence>();
    seq->request_id = s.id;
    seq->priority = s.priority;
    seq->arrival_order = i;
    seq->prompt.assign(s.tokens, 7);
    for (auto [start, rows] : s.media) {
      auto it = std::make_shared<runtime::MediaItem>();
      it->num_rows = rows;
      seq->media.push_back({start, it});
    }
    kv.InitSequence(seq.get());
    if (s.computed > 0) {
      ASSERT_TRUE(kv.Allocate(seq.get(), s.computed)) << s.id;
      seq->num_computed = s.computed;
      sched.AddRunning(seq.get());
    } else {
      sched.AddWaiting(seq.get());
    }
    seqs.push_back(std::move(seq));
  }
  StepSchedule step = sched.Schedule();
  std::vector<Expected> got;
  for (const auto& ch : step.chunks) {
    got.push_back({ch.seq->request_id, ch.start, ch.num_tokens, ch.sample});
  }
  ASSERT_EQ(got.size(), c.scheduled.size()) << c.name;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, c.scheduled[i].id) << c.name << " #" << i;
    EXPECT_EQ(got[i].start, c.scheduled[i].start) << c.name << " " << got[i].id;
    EXPECT_EQ(got[i].num_tokens, c.scheduled[i].num_tokens) << c.name << " " << got[i].id;
    EXPECT_EQ(got[i].sample, c.scheduled[i].sample) << c.name << " " << got[i].id;
  }
  std::vector<std::string> preempted;
  for (Sequence* s : step.preempted) preempted.push_back(s->request_id);
  EXPECT_EQ(preempted, c.preempted) << c.name;
  EXPECT_EQ(sched.preemptions(), static_cast<int64_t>(c.preempted.size()));
  // Every scheduled chunk has its blocks.
  for (const auto& ch : step.chunks) {
    EXPECT_GE(static_cast<int32_t>(ch.seq->block_tables[0].size()) * 4, ch.start + ch.num_tokens);
  }
  EXPECT_TRUE(kv.CheckInvariants());
  for (auto& s : seqs) sched.Remove(s.get());
  EXPECT_TRUE(kv.AllFree());
  EXPECT_EQ(sched.num_running() + sched.num_waiting(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Table, PolicyTest,
    ::testing::Values(
        PolicyCase{"decodes_first_then_prefill_chunks_under_budget",
                   64,
                   10,
                   8,
                   {{"prefilling", 0, 20, 4}, {"decode", 0, 9, 8}, {"waiting", 0, 10, 0}},
                   {{"decode", 8, 1, true}, {"prefilling", 4, 9, false}},
                   {}},
        PolicyCase{"priority_then_arrival",
                   64,
                   100,
                   8,
                   {{"x", 1, 10, 0}, {"y", 0, 10, 0}, {"z", 0, 10, 0}},
                   {{"y", 0, 10, true}, {"z", 0, 10, true}, {"x", 0, 10, true}},
                   {}},
        PolicyCase{"budget_splits_the_last_admitted_prompt",
                   64,
                   25,
                   8,
                   {{"a", 0, 10, 0}, {"b", 0, 30, 0}},
                   {{"a", 0, 10, true}, {"b", 0, 15, false}},
                   {}},
        PolicyCase{"max_num_seqs",
                   64,
                   100,
                   2,
                   {{"a", 0, 10, 0}, {"b", 0, 10, 0}, {"c", 0, 10, 0}},
                   {{"a", 0, 10, true}, {"b", 0, 10, true}},
                   {}},
        PolicyCase{"chunk_never_splits_a_media_run",
                   64,
                   10,
                   8,
                   {{"img", 0, 20, 0, {{6, 8}}}, {"next", 0, 10, 0}},
                   {{"img", 0, 6, false}, {"next", 0, 4, false}},
                   {}},
        PolicyCase{"media_run_longer_than_the_budget_left_waits_at_the_head",
                   64,
                   10,
                   8,
                   {{"a", 0, 5, 0}, {"img", 0, 20, 0, {{0, 8}}}, {"c", 0, 3, 0}},
                   {{"a", 0, 5, true}},
                   {}},
        PolicyCase{"preempts_lowest_priority_latest_for_a_decode",
                   6,
                   100,
                   8,
                   {{"a", 0, 9, 8}, {"b", 1, 13, 12}, {"c", 0, 5, 4}},
                   {{"a", 8, 1, true}, {"c", 4, 1, true}},
                   {"b"}},
        PolicyCase{"preempts_itself_when_it_is_the_worst", 2, 100, 8, {{"a", 0, 9, 8}}, {}, {"a"}},
        PolicyCase{"waiting_head_that_does_not_fit_blocks_the_rest",
                   4,
                   100,
                   8,
                   {{"r", 0, 9, 8}, {"big", 0, 12, 0}, {"small", 0, 2, 0}},
                   {{"r", 8, 1, true}},
                   {}},
        PolicyCase{"waiting_never_preempts_running",
                   3,
                   100,
                   8,
                   {{"low", 5, 9, 8}, {"urgent", 0, 8, 0}},
                   {{"low", 8, 1, true}},
                   {}}),
    [](const ::testing::TestParamInfo<PolicyCase>& info) { return info.param.name; });

}  // namespace
}  // namespace tessera::scheduler
