// Image input: PNG/JPEG/raw-RGB decoding to 8-bit RGB, and Gemma 4's preprocessing (resize inside
// the soft-token budget, cut into 48x48 patches with their positions), as MODEL.md describes.
//
// Decoders refuse a decompression bomb from the header, before allocating pixels, and turn every
// decoder error (corrupt, truncated, unsupported) into InvalidArgument; they never abort.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/media/media.h"

namespace tessera::runtime {

// Decoded pixels: [height, width, 3] row-major, 8-bit RGB.
struct RgbImage {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> pixels;
};

struct ImageLimits {
  // Largest accepted side of a decoded image; larger images are refused from the header.
  int32_t max_side = 8192;
  // Largest accepted width x height (32 Mpx: 96 MiB of RGB while it is being resized).
  int64_t max_pixels = int64_t{32} << 20;
};

// Sniffs the format from the magic bytes (PNG or JPEG).
absl::StatusOr<RgbImage> DecodeImage(std::string_view bytes, const ImageLimits& limits = {});
// PNG of any colour type and depth: grey, palette and 16-bit are expanded to 8-bit RGB
// (16-bit keeps the high byte, as PIL does), alpha is dropped (as PIL's convert("RGB")).
absl::StatusOr<RgbImage> DecodePng(std::string_view bytes, const ImageLimits& limits = {});
// Baseline/progressive JPEG: YCbCr and grey to RGB, CMYK/YCCK (Adobe-inverted or not) to RGB as
// PIL does.
absl::StatusOr<RgbImage> DecodeJpeg(std::string_view bytes, const ImageLimits& limits = {});
// Raw interleaved RGB of a stated size: exactly width * height * 3 bytes.
absl::StatusOr<RgbImage> RgbFromRaw(std::string_view bytes, int32_t width, int32_t height,
                                    const ImageLimits& limits = {});

// The soft-token budgets Gemma 4 was trained with.
inline constexpr int32_t kSoftTokenBudgets[] = {70, 140, 280, 560, 1120};
inline constexpr int32_t kDefaultMaxSoftTokens = 280;
bool IsSoftTokenBudget(int32_t max_soft_tokens);

// The resized (height, width): both multiples of 48, the aspect ratio kept as closely as flooring
// allows, and (height/48) * (width/48) <= max_soft_tokens (equivalently (H/16)(W/16) <= 9 *
// budget). A side that would round to 0 (extreme aspect ratios) becomes 48 and the other side is
// capped so the budget still holds. InvalidArgument for a budget outside kSoftTokenBudgets or an
// empty image.
absl::StatusOr<std::pair<int32_t, int32_t>> ResizedImageSize(int32_t height, int32_t width,
                                                             int32_t max_soft_tokens);

// PIL's Image.resize(..., BICUBIC) on 8-bit RGB (a = -0.5 cubic, support widened by the
// downscale factor = antialiasing; fixed-point 22-bit coefficients; horizontal pass first, 8-bit
// intermediate), which the reference processor's output matches to within 2/255.
RgbImage ResizeBicubic(const RgbImage& image, int32_t out_width, int32_t out_height);

// 48x48 patches of an image whose sides are multiples of 48: rows [n, 6912] HWC row-major in
// [0,1], raster order, positions (x = column, y = row); the hash is filled in.
MediaItem PatchifyImage(const RgbImage& image);

// Resize inside the budget, then patchify: the whole image path of Gemma 4.
absl::StatusOr<MediaItem> PreprocessImage(const RgbImage& image, int32_t max_soft_tokens);

}  // namespace tessera::runtime
