// Content hashes of preprocessed media (the prefix-cache key of a media run).
#pragma once

#include "runtime/media/media.h"

namespace tessera::runtime {

// XXH3-128 over the item's kind, row count, rows (fp32 bit patterns) and positions, all as
// little-endian bytes, so the value is the same on every run and every (little-endian) machine.
// Width/height are not hashed: rows and positions already determine the model's input.
ContentHash HashMediaItem(const MediaItem& item);

}  // namespace tessera::runtime
