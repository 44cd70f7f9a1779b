#include "server/backend.h"

#include <atomic>
#include <utility>

namespace tessera::server {

void ReleaseWhenComplete(std::unique_ptr<ReplyStream> stream, std::function<void()> on_complete) {
  // The notification holds the stream (a cycle through the stream's own notify slot) until the
  // Completion is taken; then it clears the slot, and the copy running now drops the last reference
  // when it returns. Two notifications may race (SetNotify's own call and the engine's): `fired`
  // lets one of them finish.
  std::shared_ptr<ReplyStream> s(std::move(stream));
  auto fired = std::make_shared<std::atomic<bool>>(false);
  s->Cancel();
  s->SetNotify([s, fired, on_complete = std::move(on_complete)] {
    std::vector<ReplyEvent> events;
    if (!s->Drain(&events) || fired->exchange(true)) return;
    if (on_complete) on_complete();
    s->SetNotify(nullptr);
  });
}

}  // namespace tessera::server
