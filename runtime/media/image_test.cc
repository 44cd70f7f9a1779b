#include "runtime/media/image.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "runtime/media/media_hash.h"
#include "runtime/model/safetensors.h"
#include "testdata/testdata.h"

namespace tessera::runtime {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Seed(const std::string& name) {
  return ReadFile(testing::RunfilePath("tests/fuzz/corpus/image/") + name);
}
std::string Expected(const std::string& name) {
  return ReadFile(testing::RunfilePath("runtime/media/testdata/image/") + name);
}

// The reference processor (transformers' Gemma4UnifiedImageProcessor, max_soft_tokens=70) on a
// 100x150 image: 60 soft tokens (288x480), padded to 70 rows with (-1,-1) positions.
TEST(ImageTest, MatchesTheReferenceProcessor) {
  auto file =
      SafetensorsFile::Open(testing::FixturesDir() + "/gemma4-tiny/image_processor.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* raw = (*file)->Find("raw_rgb_u8");
  ASSERT_NE(raw, nullptr);
  ASSERT_EQ(raw->ShapeString(), "[100, 150, 3]");
  auto values = ToFloatVector(*(*file)->Find("proc_pixel_values"));
  auto positions = ToInt64Vector(*(*file)->Find("proc_image_position_ids"));
  auto count = ToInt64Vector(*(*file)->Find("proc_num_soft_tokens_per_image"));
  ASSERT_TRUE(values.ok() && positions.ok() && count.ok());

  auto image = RgbFromRaw(
      std::string_view(reinterpret_cast<const char*>(raw->data), raw->num_bytes), 150, 100);
  ASSERT_TRUE(image.ok()) << image.status();
  auto item = PreprocessImage(*image, 70);
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(item->height, 288);
  EXPECT_EQ(item->width, 480);
  ASSERT_EQ(item->num_rows, (*count)[0]);
  for (int i = 0; i < 70; ++i) {
    for (int c = 0; c < 2; ++c) {
      const int64_t want = (*positions)[2 * i + c];
      if (i < item->num_rows) {
        EXPECT_EQ(item->positions[2 * i + c], want) << "row " << i;
      } else {
        EXPECT_EQ(want, -1);  // Padding rows: we emit none.
      }
    }
  }
  // Tolerance: our resize is PIL's bicubic exactly; the reference used torchvision's antialiased
  // uint8 bicubic, which rounds its fixed-point sums slightly differently: about 0.5% of values
  // differ, by at most 2/255 (measured: PIL vs the fixture, same numbers). The mean bounds the
  // count of such values so a wrong filter (bilinear: mean error 10/255) cannot pass.
  double max_diff = 0, sum_diff = 0;
  const size_t n = static_cast<size_t>(item->num_rows) * kPatchValues;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(item->rows[i] - (*values)[i]);
    max_diff = std::max(max_diff, d);
    sum_diff += d;
  }
  EXPECT_LE(max_diff, 2.0 / 255 + 1e-6);
  EXPECT_LE(sum_diff / n, 0.02 / 255);
}

// The golden multimodal prompt's image is already 96x144: its patches are a plain cut.
TEST(ImageTest, PatchesMatchTheGoldenCut) {
  auto file = SafetensorsFile::Open(testing::FixturesDir() + "/gemma4-tiny/golden.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* raw = (*file)->Find("mm_image_rgb_u8");
  auto patches = ToFloatVector(*(*file)->Find("mm_pixel_patches"));
  auto positions = ToInt64Vector(*(*file)->Find("mm_image_position_ids"));
  ASSERT_TRUE(patches.ok() && positions.ok());
  auto image = RgbFromRaw(
      std::string_view(reinterpret_cast<const char*>(raw->data), raw->num_bytes), 144, 96);
  ASSERT_TRUE(image.ok());
  MediaItem item = PatchifyImage(*image);
  ASSERT_EQ(item.num_rows, 6);
  for (size_t i = 0; i < positions->size(); ++i) EXPECT_EQ(item.positions[i], (*positions)[i]);
  for (size_t i = 0; i < patches->size(); ++i) {
    ASSERT_NEAR(item.rows[i], (*patches)[i], 1e-7) << i;  // One float32 ulp of x/255.
  }
}

// Every decoded seed equals what PIL's Image.open(...).convert("RGB") gives (same libjpeg-turbo,
// so JPEG is exact too).
TEST(ImageTest, DecodersMatchPil) {
  for (const char* name :
       {"rgb.png", "gray.png", "bilevel.png", "palette.png", "rgba.png", "gray_alpha.png",
        "rgb16.png", "rgb.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg"}) {
    SCOPED_TRACE(name);
    const std::string bytes = Seed(name);
    ASSERT_FALSE(bytes.empty());
    auto image = DecodeImage(bytes);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->width, 37);
    EXPECT_EQ(image->height, 23);
    const std::string want = Expected(std::string(name) + ".rgb");
    ASSERT_EQ(want.size(), image->pixels.size());
    int max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(static_cast<uint8_t>(want[i]) - image->pixels[i]));
    }
    EXPECT_EQ(max_diff, 0);
  }
}

TEST(ImageTest, ResizeIsPilBicubic) {
  auto image = DecodeImage(Seed("rgb.png"));
  ASSERT_TRUE(image.ok());
  for (auto [w, h] : {std::pair{96, 48}, std::pair{17, 11}}) {
    RgbImage out = ResizeBicubic(*image, w, h);
    const std::string want =
        Expected("rgb.png.resized_" + std::to_string(w) + "x" + std::to_string(h) + ".rgb");
    ASSERT_EQ(want.size(), out.pixels.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(static_cast<uint8_t>(want[i]), out.pixels[i]) << w << "x" << h << " at " << i;
    }
  }
}

TEST(ImageTest, ResizedSizeKeepsTheBudget) {
  EXPECT_EQ(*ResizedImageSize(100, 150, 70), std::make_pair(288, 480));
  for (int budget : kSoftTokenBudgets) {
    for (auto [h, w] : {std::pair{1, 1}, std::pair{10, 4000}, std::pair{4000, 10},
                        std::pair{768, 768}, std::pair{1080, 1920}, std::pair{3, 100000}}) {
      auto size = ResizedImageSize(h, w, budget);
      ASSERT_TRUE(size.ok());
      EXPECT_EQ(size->first % 48, 0);
      EXPECT_EQ(size->second % 48, 0);
      EXPECT_GT(size->first, 0);
      EXPECT_GT(size->second, 0);
      EXPECT_LE((size->first / 16) * (size->second / 16), 9 * budget) << h << "x" << w;
    }
  }
  // A square at the default budget: 16 x 16 = 256 soft tokens of 280 (floor of sqrt(280)).
  EXPECT_EQ(*ResizedImageSize(1000, 1000, 280), std::make_pair(768, 768));
  auto bad = ResizedImageSize(100, 100, 100);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("70, 140, 280, 560, 1120"), std::string::npos);
}

TEST(ImageTest, RefusesBadInputNamingTheLimit) {
  // A decompression bomb: the header claims 100000x100000; refused before any pixel is allocated.
  auto bomb = DecodeImage(Expected("bomb.png"));
  EXPECT_EQ(bomb.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bomb.status().message().find("100000x100000"), std::string::npos) << bomb.status();
  EXPECT_NE(bomb.status().message().find("8192 per side"), std::string::npos) << bomb.status();

  ImageLimits small;
  small.max_pixels = 500;
  auto too_many = DecodeImage(Seed("rgb.jpg"), small);
  EXPECT_NE(too_many.status().message().find("the limit is 500 pixels"), std::string::npos)
      << too_many.status();

  for (const char* name : {"rgb.png", "rgb.jpg", "progressive.jpg"}) {
    const std::string bytes = Seed(name);
    for (size_t cut : {bytes.size() / 2, bytes.size() - 3, size_t{20}}) {
      auto truncated = DecodeImage(bytes.substr(0, cut));
      EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument)
          << name << " cut at " << cut;
    }
  }
  auto garbage = DecodeImage("GIF89a....");
  EXPECT_NE(garbage.status().message().find("not supported"), std::string::npos);
  EXPECT_EQ(DecodeImage("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RgbFromRaw("abc", 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  auto wrong = RgbFromRaw("abcd", 1, 1);
  EXPECT_NE(wrong.status().message().find("needs 3 bytes; got 4"), std::string::npos);
  auto huge = RgbFromRaw("", 9000, 9000);
  EXPECT_NE(huge.status().message().find("9000x9000 pixels; the limit is 8192 per side"),
            std::string::npos)
      << huge.status();
}

// Known value: XXH3-128 of the little-endian bytes (kind 0, 1 row, 6912 x 0.5f, position (0,0))
// as computed by the xxhsum command line tool (`xxhsum -H2`, printed high64 then low64).
TEST(ImageTest, ContentHashIsXxh3OfTheInput) {
  MediaItem item;
  item.kind = MediaKind::kImage;
  item.num_rows = 1;
  item.rows.assign(kPatchValues, 0.5f);
  item.positions = {0, 0};
  EXPECT_EQ(HashMediaItem(item), (ContentHash{0x8f76b679b7215588ull, 0xdc5f7a64ef1a2e63ull}));
  item.positions = {1, 0};
  EXPECT_NE(HashMediaItem(item), (ContentHash{0x8f76b679b7215588ull, 0xdc5f7a64ef1a2e63ull}));
}

}  // namespace
}  // namespace tessera::runtime
