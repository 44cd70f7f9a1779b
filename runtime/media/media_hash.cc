#include "runtime/media/media_hash.h"

#include <cstdint>
#include <cstring>

#include "xxhash.h"

namespace tessera::runtime {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "HashMediaItem hashes in-memory bytes; a big-endian port must byte-swap first");

ContentHash HashMediaItem(const MediaItem& item) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  const int32_t header[2] = {static_cast<int32_t>(item.kind), item.num_rows};
  XXH3_128bits_update(state, header, sizeof(header));
  XXH3_128bits_update(state, item.rows.data(), item.rows.size() * sizeof(float));
  XXH3_128bits_update(state, item.positions.data(), item.positions.size() * sizeof(int32_t));
  const XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  return ContentHash{h.low64, h.high64};
}

}  // namespace tessera::runtime
