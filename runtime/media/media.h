// What the model eats besides token ids: preprocessed media items and where they sit in a prompt.
//
// Produced by prompt building (image/audio preprocessing), carried by the scheduler inside requests
// (shared, immutable), consumed by a ModelRunner which projects the rows into embeddings.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace tessera::runtime {

enum class MediaKind {
  kImage = 0,  // 48x48 RGB patches; also each frame of a video.
  kAudio = 1,  // 640-sample frames of 16 kHz mono audio.
};

inline constexpr int kPatchSide = 48;
inline constexpr int kPatchValues = kPatchSide * kPatchSide * 3;  // 6912, HWC row-major in [0,1].
inline constexpr int kAudioFrameSamples = 640;                    // 40 ms at 16 kHz.
inline constexpr int kAudioSampleRate = 16000;

// 128-bit content hash of the preprocessed input (patch values and positions, or frame samples),
// stable across runs and machines. Part of the prefix-cache key.
using ContentHash = std::array<uint64_t, 2>;

// One preprocessed media item: one image, one video frame, or one audio clip.
struct MediaItem {
  MediaKind kind = MediaKind::kImage;
  int32_t num_rows = 0;  // Soft tokens: patches or frames.
  // Row-major [num_rows, kPatchValues] (image) or [num_rows, kAudioFrameSamples] (audio).
  std::vector<float> rows;
  // Image only: [num_rows, 2] as (x = column, y = row) of each patch in the resized image.
  std::vector<int32_t> positions;
  ContentHash hash{};
  // Image only: the resized size in pixels (both multiples of 48), for diagnostics and usage.
  int32_t width = 0;
  int32_t height = 0;

  const float* row(int32_t i) const {
    return rows.data() +
           static_cast<size_t>(i) * (kind == MediaKind::kImage ? kPatchValues : kAudioFrameSamples);
  }
};

// A contiguous run of placeholder tokens in a prompt whose rows are the item's soft tokens.
// Positions are absolute token positions in the sequence: [start, start + item->num_rows).
struct MediaRun {
  int32_t start = 0;
  std::shared_ptr<const MediaItem> item;
  // Image and video-frame runs attend to themselves in both directions (in every layer; see
  // BidirectionalSpan in model_runner.h).
  bool bidirectional() const { return item->kind == MediaKind::kImage; }
  int32_t end() const { return start + item->num_rows; }
};

}  // namespace tessera::runtime
