#include "server/fake_backend.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tessera::server {
namespace {

class FakeStream : public ReplyStream {
 public:
  FakeStream(std::string id, std::vector<std::string> words, int max_tokens, absl::Duration delay,
             absl::Time deadline, std::atomic<int>* live, ServingMetrics* metrics)
      : id_(std::move(id)), live_(live) {
    live_->fetch_add(1);
    thread_ = std::thread([this, words = std::move(words), max_tokens, delay, deadline, metrics] {
      const absl::Time start = absl::Now();
      scheduler::Completion c;
      c.reason = scheduler::FinishReason::kStop;
      int n = 0;
      for (const std::string& w : words) {
        if (n >= max_tokens) {
          c.reason = scheduler::FinishReason::kLength;
          break;
        }
        absl::SleepFor(delay);
        if (cancelled_.load() || absl::Now() > deadline) {
          c.reason = scheduler::FinishReason::kAbort;
          c.status = cancelled_.load() ? absl::CancelledError("cancelled")
                                       : absl::DeadlineExceededError("deadline");
          break;
        }
        scheduler::TokenDelta d;
        d.token_ids = {n};
        d.text = (n == 0 ? "" : " ") + w;
        d.logprobs.push_back({n, -0.5f, {{n, -0.5f}}});
        ++n;
        Push(std::move(d));
      }
      c.usage.prompt_tokens = static_cast<int32_t>(words.size());
      c.usage.completion_tokens = n;
      c.usage.time_to_first_token = delay;
      c.usage.total_time = absl::Now() - start;
      if (metrics != nullptr) {
        metrics->RecordFinished({scheduler::FinishReasonName(c.reason), c.usage.prompt_tokens,
                                 c.usage.completion_tokens, absl::ZeroDuration(),
                                 c.usage.time_to_first_token, c.usage.total_time});
      }
      live_->fetch_sub(1);
      Push(std::move(c));
    });
  }
  ~FakeStream() override {
    cancelled_.store(true);
    // The last reference may go on the stream's own thread (a released stream is freed by its
    // notification): that thread is returning from its last Push and touches nothing after it.
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  const std::string& request_id() const override { return id_; }
  bool Next(ReplyEvent* event, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
    *event = std::move(queue_.front());
    queue_.erase(queue_.begin());
    return true;
  }
  bool Drain(std::vector<ReplyEvent>* out) override {
    absl::MutexLock lock(&mu_);
    for (auto& e : queue_) {
      if (std::holds_alternative<scheduler::Completion>(e)) done_ = true;
      out->push_back(std::move(e));
    }
    queue_.clear();
    return done_;
  }
  void SetNotify(std::function<void()> notify) override {
    std::function<void()> now;
    {
      absl::MutexLock lock(&mu_);
      notify_ = std::move(notify);
      if (!queue_.empty()) now = notify_;
    }
    if (now) now();
  }
  void Cancel() override { cancelled_.store(true); }

 private:
  void Push(ReplyEvent e) {
    std::function<void()> notify;
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(e));
      notify = notify_;
    }
    if (notify) notify();
  }

  const std::string id_;
  std::atomic<int>* live_;
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  std::vector<ReplyEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace

FakeBackend::FakeBackend() {
  info_.set_id("fake");
  info_.set_architecture("Fake");
  info_.set_context_length(4096);
  info_.set_device("cpu");
}

FakeBackend::~FakeBackend() = default;

absl::StatusOr<std::unique_ptr<ReplyStream>> FakeBackend::Generate(
    const v1::GenerateRequest& request, absl::Time deadline) {
  if (before_generate) before_generate(request);
  if (live_.load() >= max_live) {
    return absl::ResourceExhaustedError("the request queue is full (--max_queue_length); retry");
  }
  std::string text = request.prompt();
  for (const auto& m : request.messages()) {
    for (const auto& p : m.parts()) {
      if (p.has_text()) absl::StrAppend(&text, " ", p.text());
      if (p.has_image() && p.image().encoded().substr(0, 4) != "\x89PNG") {
        return absl::InvalidArgumentError("the image is not a PNG or JPEG file");
      }
    }
  }
  std::vector<std::string> words = absl::StrSplit(text, ' ', absl::SkipEmpty());
  const int max_tokens = request.stopping().has_max_tokens()
                             ? static_cast<int>(request.stopping().max_tokens())
                             : 1 << 30;
  const std::string id =
      request.request_id().empty() ? absl::StrCat("fake-", next_id_++) : request.request_id();
  return std::unique_ptr<ReplyStream>(
      new FakeStream(id, std::move(words), max_tokens, token_delay, deadline, &live_, metrics));
}

bool FakeBackend::Abort(const std::string&) { return false; }

absl::StatusOr<v1::CountTokensResponse> FakeBackend::CountTokens(const v1::CountTokensRequest&) {
  return absl::UnimplementedError("fake");
}

absl::StatusOr<std::unique_ptr<Session>> FakeBackend::OpenSession(const v1::SessionStart&) {
  return absl::UnimplementedError("sessions are not implemented by the fake backend");
}

std::string FakeBackend::TokenText(int32_t token_id) const { return absl::StrCat("t", token_id); }

EngineSnapshot FakeBackend::Snapshot() {
  EngineSnapshot s;
  s.num_running = live_.load();
  return s;
}

}  // namespace tessera::server
