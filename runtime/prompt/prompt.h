// A fully built prompt: the ids the model reads, with media runs where placeholder ids stand.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/media/media.h"

namespace tessera::runtime {

struct Prompt {
  // Every position's token id, BOS included. Inside a media run the id is the placeholder
  // (<|image|>, <|audio|> or <|video|>); the row itself comes from the run's item.
  std::vector<int32_t> token_ids;
  // Sorted by start, non-overlapping, each inside token_ids.
  std::vector<MediaRun> media;

  int32_t size() const { return static_cast<int32_t>(token_ids.size()); }
};

}  // namespace tessera::runtime
