// libFuzzer target for the PNG/JPEG decoders and the image path (built outside Bazel by
// tests/fuzz/run.sh; replayed under bazel test by image_regression_test).
#include "tests/fuzz/image_fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "runtime/media/image.h"

namespace tessera::runtime {

std::string CheckImageFuzzInput(const uint8_t* data, size_t size) {
  ImageLimits limits;
  limits.max_side = 4096;
  limits.max_pixels = 2 << 20;
  absl::StatusOr<RgbImage> image =
      DecodeImage(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!image.ok()) {
    if (image.status().code() != absl::StatusCode::kInvalidArgument) {
      return absl::StrCat("decode failed with a non-InvalidArgument status: ",
                          image.status().ToString());
    }
    return "";
  }
  if (image->width <= 0 || image->height <= 0 || image->width > limits.max_side ||
      image->height > limits.max_side ||
      int64_t{image->width} * image->height > limits.max_pixels) {
    return absl::StrCat("decoded size ", image->width, "x", image->height, " breaks the limits");
  }
  if (image->pixels.size() != static_cast<size_t>(image->width) * image->height * 3) {
    return "pixel buffer size does not match the decoded size";
  }
  absl::StatusOr<MediaItem> item = PreprocessImage(*image, 70);
  if (!item.ok()) return absl::StrCat("preprocessing failed: ", item.status().ToString());
  if (item->num_rows <= 0 || item->num_rows > 70) {
    return absl::StrCat(item->num_rows, " soft tokens for a budget of 70");
  }
  if (item->rows.size() != static_cast<size_t>(item->num_rows) * kPatchValues) {
    return "rows size mismatch";
  }
  for (float v : item->rows) {
    if (!(v >= 0.0f && v <= 1.0f)) return absl::StrCat("patch value ", v, " outside [0, 1]");
  }
  const int32_t cols = item->width / kPatchSide, rows = item->height / kPatchSide;
  for (int32_t i = 0; i < item->num_rows; ++i) {
    if (item->positions[2 * i] != i % cols || item->positions[2 * i + 1] != i / cols ||
        i / cols >= rows) {
      return absl::StrCat("position of patch ", i, " is wrong");
    }
  }
  return "";
}

}  // namespace tessera::runtime

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string why = tessera::runtime::CheckImageFuzzInput(data, size);
  if (!why.empty()) {
    std::fprintf(stderr, "image_fuzz: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
