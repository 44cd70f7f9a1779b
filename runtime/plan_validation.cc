#include "runtime/plan_validation.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tessera::runtime {
namespace {

// Rows [item_row, item_row + count) of `item` exist and this model can embed them.
absl::Status ValidateMediaRows(const ModelConfig& config, MediaSupport media, const MediaItem* item,
                               int32_t item_row, int32_t count) {
  if (item == nullptr) return absl::InvalidArgumentError("media rows without an item");
  if (count < 0 || item_row < 0 || item_row + static_cast<int64_t>(count) > item->num_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("media rows [", item_row, ", ", item_row + static_cast<int64_t>(count),
                     ") outside the item's ", item->num_rows, " rows"));
  }
  if (item->kind == MediaKind::kImage) {
    if (!media.vision) {
      return absl::InvalidArgumentError("this model has no vision weights; it cannot take images");
    }
    if (item->rows.size() < static_cast<size_t>(item->num_rows) * kPatchValues ||
        item->positions.size() < static_cast<size_t>(item->num_rows) * 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("image item of ", item->num_rows, " patches carries ", item->rows.size(),
                       " values and ", item->positions.size(), " position entries; expected ",
                       kPatchValues, " and 2 per patch"));
    }
    const int32_t limit = config.vision.mm_posemb_size;
    for (int32_t r = item_row; r < item_row + count; ++r) {
      const int32_t x = item->positions[2 * r], y = item->positions[2 * r + 1];
      if (x < 0 || y < 0 || x >= limit || y >= limit) {
        return absl::InvalidArgumentError(
            absl::StrCat("image patch ", r, " at (x=", x, ", y=", y,
                         ") is outside the model's position table of ", limit, " per side"));
      }
    }
    return absl::OkStatus();
  }
  if (item->kind == MediaKind::kAudio) {
    if (!media.audio) {
      return absl::InvalidArgumentError("this model has no audio weights; it cannot take audio");
    }
    if (config.audio.audio_embed_dim != kAudioFrameSamples) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model's audio frames are ", config.audio.audio_embed_dim,
                       " samples; media items carry ", kAudioFrameSamples));
    }
    if (item->rows.size() < static_cast<size_t>(item->num_rows) * kAudioFrameSamples) {
      return absl::InvalidArgumentError(absl::StrCat("audio item of ", item->num_rows,
                                                     " frames carries only ", item->rows.size(),
                                                     " samples"));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown media kind");
}

}  // namespace

absl::Status ValidateBatchPlan(const BatchPlan& plan, const KvCacheSpec& spec,
                               const ModelConfig& config, MediaSupport media) {
  for (size_t si = 0; si < plan.seqs.size(); ++si) {
    const SequencePlan& s = plan.seqs[si];
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": ", what));
    };
    const int64_t n = static_cast<int64_t>(s.token_ids.size());
    if (n == 0) return bad("no new rows");
    if (s.start_pos < 0) return bad(absl::StrCat("start_pos ", s.start_pos, " is negative"));
    const int64_t end = s.start_pos + n;
    if (end > std::numeric_limits<int32_t>::max()) return bad("positions overflow int32");
    if (s.block_tables.size() != spec.groups.size()) {
      return bad(absl::StrCat(s.block_tables.size(), " block tables for ", spec.groups.size(),
                              " KV groups"));
    }
    for (size_t g = 0; g < spec.groups.size(); ++g) {
      const KvGroupSpec& gs = spec.groups[g];
      const auto& table = s.block_tables[g];
      const int64_t need = (end + gs.block_size - 1) / gs.block_size;
      if (static_cast<int64_t>(table.size()) < need) {
        return bad(absl::StrCat("block table of group ", gs.name, " has ", table.size(),
                                " blocks; positions [0, ", end, ") need ", need));
      }
      // Every block this step reads or writes must be a real block.
      const int64_t first_read =
          gs.window > 0 ? std::max<int64_t>(0, s.start_pos - gs.window + 1) : 0;
      for (int64_t b = 0; b < need; ++b) {
        const int32_t id = table[b];
        if (id == kReleasedBlock && (b + 1) * gs.block_size <= first_read) continue;
        if (id < 0 || id >= gs.num_blocks) {
          return bad(
              absl::StrCat("block table of group ", gs.name, " entry ", b, " is ", id,
                           id == kReleasedBlock ? " (released) but still inside the window" : "",
                           "; the pool has ", gs.num_blocks, " blocks"));
        }
      }
    }
    std::vector<bool> is_media(n, false);
    for (const MediaRows& m : s.media) {
      if (m.count < 1 || m.seq_row < 0 || m.seq_row + static_cast<int64_t>(m.count) > n) {
        return bad(absl::StrCat("media rows [", m.seq_row, ", ", m.seq_row + int64_t{m.count},
                                ") outside the ", n, " new rows"));
      }
      absl::Status st = ValidateMediaRows(config, media, m.item, m.item_row, m.count);
      if (!st.ok()) return bad(std::string(st.message()));
      for (int32_t i = m.seq_row; i < m.seq_row + m.count; ++i) {
        if (is_media[i]) return bad(absl::StrCat("row ", i, " is in two media entries"));
        is_media[i] = true;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (is_media[i]) continue;
      const int32_t id = s.token_ids[i];
      if (id < 0 || id >= config.text.vocab_size) {
        return bad(absl::StrCat("token id ", id, " at row ", i, " is outside the vocabulary of ",
                                config.text.vocab_size));
      }
    }
    for (const BidirectionalSpan& sp : s.bidirectional) {
      if (sp.begin >= sp.end || sp.begin < s.start_pos || sp.end > end) {
        return bad(absl::StrCat("bidirectional span [", sp.begin, ", ", sp.end,
                                ") is not inside the new rows [", s.start_pos, ", ", end, ")"));
      }
    }
    for (int32_t r : s.logits_rows) {
      if (r < 0 || r >= n)
        return bad(absl::StrCat("logits row ", r, " outside the ", n, " new rows"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera::runtime
