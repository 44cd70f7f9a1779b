#include "scheduler/stop_matcher.h"

#include <algorithm>

namespace tessera::scheduler {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings) {
  for (auto& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopStringMatcher::Append(std::string_view text, std::optional<std::string>* matched) {
  // Nothing new cannot complete a stop string (held text holds none) nor release held text.
  if (text.empty()) return {};
  held_.append(text.data(), text.size());
  if (stops_.empty()) {
    std::string out;
    out.swap(held_);
    return out;
  }
  // Earliest complete stop string. Held text never contains one (it would have matched before),
  // and emitted text cannot start one (its longest stop-prefix suffix was held).
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const auto& stop : stops_) {
    const size_t pos = held_.find(stop);
    if (pos < best) {
      best = pos;
      best_stop = &stop;
    }
  }
  if (best_stop != nullptr) {
    *matched = *best_stop;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  // Hold the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& stop : stops_) {
    const size_t max_k = std::min(stop.size() - 1, held_.size());
    for (size_t k = max_k; k > hold; --k) {
      if (std::string_view(held_).substr(held_.size() - k) == std::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace tessera::scheduler
