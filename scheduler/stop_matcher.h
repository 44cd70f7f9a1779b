// Stop strings over streamed text: text that could still be the beginning of a stop string is held
// back until it cannot, and a stop string itself is never emitted.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::scheduler {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  // Takes the next piece of decoded text; returns the text that is now safe to emit. When a stop
  // string completes, `*matched` is set, the returned text ends right before it, and nothing more
  // should be appended.
  std::string Append(std::string_view text, std::optional<std::string>* matched);
  // Everything still held back (at the end of the stream, when no stop string matched).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace tessera::scheduler
