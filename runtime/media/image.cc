#include "runtime/media/image.h"

#include <png.h>
#include <setjmp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/media/media_hash.h"

// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>

namespace tessera::runtime {
namespace {

absl::Status CheckSize(int64_t width, int64_t height, const ImageLimits& limits) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", width, "x", height, " pixels; both sides must be at least 1"));
  }
  if (width > limits.max_side || height > limits.max_side) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image is ", width, "x", height, " pixels; the limit is ", limits.max_side, " per side"));
  }
  if (width * height > limits.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat("image is ", width, "x", height, " = ",
                                                   width * height, " pixels; the limit is ",
                                                   limits.max_pixels, " pixels"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// PNG (libpng). Errors longjmp back into DecodePngInner, whose frame holds only trivially
// destructible locals; everything owning memory lives in PngState, owned by the caller.

struct PngState {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t offset = 0;
  ImageLimits limits;
  RgbImage* out = nullptr;
  std::vector<png_bytep> rows;
  char error[256] = {0};
  absl::Status size_status;  // Set when the header is refused (not a libpng error).
};

void PngError(png_structp png, png_const_charp message) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  snprintf(st->error, sizeof(st->error), "%s", message);
  png_longjmp(png, 1);
}

void PngWarning(png_structp, png_const_charp) {}

void PngRead(png_structp png, png_bytep dst, png_size_t length) {
  auto* st = static_cast<PngState*>(png_get_io_ptr(png));
  if (length > st->size - st->offset) png_error(png, "truncated PNG data");
  memcpy(dst, st->data + st->offset, length);
  st->offset += length;
}

// Returns true on success; on failure st->error or st->size_status says why.
bool DecodePngInner(PngState* st) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, PngError, PngWarning);
  if (png == nullptr) {
    snprintf(st->error, sizeof(st->error), "libpng could not start");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    snprintf(st->error, sizeof(st->error), "libpng could not start");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, st, PngRead);
  // Bombs: CheckSize below refuses the IHDR's size (libpng's own limit, 1000000 per side, stays as
  // a backstop so that our message names our limit); ancillary chunk memory (zTXt, iCCP) is capped.
  png_set_chunk_malloc_max(png, 8 << 20);
  png_set_chunk_cache_max(png, 1000);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  st->size_status = CheckSize(width, height, st->limits);
  if (!st->size_status.ok()) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (bit_depth == 16) png_set_strip_16(png);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
    png_set_gray_to_rgb(png);
  }
  if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(width) * 3) {
    png_error(png, "unexpected row layout after conversion to RGB");
  }
  st->out->width = static_cast<int32_t>(width);
  st->out->height = static_cast<int32_t>(height);
  st->out->pixels.assign(static_cast<size_t>(width) * height * 3, 0);
  st->rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) {
    st->rows[y] = st->out->pixels.data() + static_cast<size_t>(y) * width * 3;
  }
  png_read_image(png, st->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// ---------------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo), with the same setjmp discipline.

struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
  int warnings = 0;
  bool truncated = false;
};

// A corrupt stream can warn once per MCU; past this many we give up rather than spin.
constexpr int kMaxJpegWarnings = 100;

void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // Trace messages.
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) err->truncated = true;
  if (++err->warnings > kMaxJpegWarnings || err->truncated) {
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
  }
}

struct JpegState {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ImageLimits limits;
  RgbImage* out = nullptr;
  std::vector<uint8_t> row;  // One CMYK scanline.
  JpegError error;
  absl::Status size_status;
};

bool DecodeJpegInner(JpegState* st) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&st->error.mgr);
  st->error.mgr.error_exit = JpegErrorExit;
  st->error.mgr.emit_message = JpegEmitMessage;
  if (setjmp(st->error.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  // libjpeg's memory manager refuses allocations past this (progressive coefficient buffers).
  cinfo.mem->max_memory_to_use = 1l << 30;
  jpeg_mem_src(&cinfo, st->data, static_cast<unsigned long>(st->size));
  jpeg_read_header(&cinfo, TRUE);
  st->size_status = CheckSize(cinfo.image_width, cinfo.image_height, st->limits);
  if (!st->size_status.ok()) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int components = cinfo.output_components;
  if (components != (cmyk ? 4 : 3)) {
    snprintf(st->error.message, sizeof(st->error.message),
             "unexpected JPEG output with %d components", components);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const int32_t width = static_cast<int32_t>(cinfo.output_width);
  const int32_t height = static_cast<int32_t>(cinfo.output_height);
  st->out->width = width;
  st->out->height = height;
  st->out->pixels.assign(static_cast<size_t>(width) * height * 3, 0);
  st->row.resize(static_cast<size_t>(width) * components);
  // Adobe's CMYK JPEGs store inverted values (PIL reads them as "CMYK;I").
  const bool inverted = cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* dst = st->out->pixels.data() + static_cast<size_t>(cinfo.output_scanline) * width * 3;
    JSAMPROW row = cmyk ? st->row.data() : dst;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      snprintf(st->error.message, sizeof(st->error.message), "JPEG scanline could not be read");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    if (cmyk) {
      // PIL's CMYK -> RGB: channel = (255 - c) * (255 - k) / 255, rounded.
      for (int32_t x = 0; x < width; ++x) {
        const uint8_t* p = st->row.data() + 4 * x;
        const int k = inverted ? p[3] : 255 - p[3];
        for (int c = 0; c < 3; ++c) {
          const int v = inverted ? p[c] : 255 - p[c];
          const int t = v * k + 128;
          dst[3 * x + c] = static_cast<uint8_t>((t + (t >> 8)) >> 8);
        }
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// ---------------------------------------------------------------------------------------------
// PIL's resampling (Pillow src/libImaging/Resample.c), 8-bit path.

constexpr int kPrecisionBits = 32 - 8 - 2;

double BicubicFilter(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // [out_size, 2]: xmin, count.
  std::vector<int32_t> k;   // [out_size, ksize], fixed point.
};

Coefficients PrecomputeCoefficients(int in_size, int out_size) {
  constexpr double kSupport = 2.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = kSupport * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> pre(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = BicubicFilter((x + xmin - center + 0.5) * ss);
      pre[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? pre[x] / ww : pre[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? std::trunc(-0.5 + v * (1 << kPrecisionBits))
                                     : std::trunc(0.5 + v * (1 << kPrecisionBits)));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

uint8_t Clip8(int32_t in) {
  const int32_t v = in >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

RgbImage ResampleHorizontal(const RgbImage& in, int out_width) {
  const Coefficients c = PrecomputeCoefficients(in.width, out_width);
  RgbImage out{out_width, in.height, std::vector<uint8_t>(size_t{3} * out_width * in.height)};
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* src = in.pixels.data() + size_t{3} * in.width * y;
    uint8_t* dst = out.pixels.data() + size_t{3} * out_width * y;
    for (int xx = 0; xx < out_width; ++xx) {
      const int xmin = c.bounds[2 * xx], count = c.bounds[2 * xx + 1];
      const int32_t* k = c.k.data() + static_cast<size_t>(xx) * c.ksize;
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < count; ++x) {
        const uint8_t* p = src + 3 * (xmin + x);
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      dst[3 * xx] = Clip8(s0);
      dst[3 * xx + 1] = Clip8(s1);
      dst[3 * xx + 2] = Clip8(s2);
    }
  }
  return out;
}

RgbImage ResampleVertical(const RgbImage& in, int out_height) {
  const Coefficients c = PrecomputeCoefficients(in.height, out_height);
  RgbImage out{in.width, out_height, std::vector<uint8_t>(size_t{3} * in.width * out_height)};
  const size_t stride = size_t{3} * in.width;
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = c.bounds[2 * yy], count = c.bounds[2 * yy + 1];
    const int32_t* k = c.k.data() + static_cast<size_t>(yy) * c.ksize;
    uint8_t* dst = out.pixels.data() + stride * yy;
    for (size_t i = 0; i < stride; ++i) {
      int32_t s = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < count; ++y) s += in.pixels[stride * (ymin + y) + i] * k[y];
      dst[i] = Clip8(s);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<RgbImage> DecodePng(std::string_view bytes, const ImageLimits& limits) {
  RgbImage image;
  PngState st;
  st.data = reinterpret_cast<const uint8_t*>(bytes.data());
  st.size = bytes.size();
  st.limits = limits;
  st.out = &image;
  if (!DecodePngInner(&st)) {
    if (!st.size_status.ok()) return st.size_status;
    return absl::InvalidArgumentError(absl::StrCat("image is not a valid PNG (", st.error, ")"));
  }
  return image;
}

absl::StatusOr<RgbImage> DecodeJpeg(std::string_view bytes, const ImageLimits& limits) {
  RgbImage image;
  JpegState st;
  st.data = reinterpret_cast<const uint8_t*>(bytes.data());
  st.size = bytes.size();
  st.limits = limits;
  st.out = &image;
  if (!DecodeJpegInner(&st)) {
    if (!st.size_status.ok()) return st.size_status;
    return absl::InvalidArgumentError(absl::StrCat(
        st.error.truncated ? "image is a truncated JPEG (" : "image is not a valid JPEG (",
        st.error.message, ")"));
  }
  return image;
}

absl::StatusOr<RgbImage> DecodeImage(std::string_view bytes, const ImageLimits& limits) {
  static constexpr uint8_t kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && memcmp(bytes.data(), kPngMagic, 8) == 0) {
    return DecodePng(bytes, limits);
  }
  if (bytes.size() >= 3 && static_cast<uint8_t>(bytes[0]) == 0xFF &&
      static_cast<uint8_t>(bytes[1]) == 0xD8 && static_cast<uint8_t>(bytes[2]) == 0xFF) {
    return DecodeJpeg(bytes, limits);
  }
  if (bytes.empty()) return absl::InvalidArgumentError("image data is empty");
  return absl::InvalidArgumentError(
      "image format is not supported; send PNG or JPEG bytes, or raw RGB with its size");
}

absl::StatusOr<RgbImage> RgbFromRaw(std::string_view bytes, int32_t width, int32_t height,
                                    const ImageLimits& limits) {
  absl::Status size = CheckSize(width, height, limits);
  if (!size.ok()) return size;
  const size_t expected = static_cast<size_t>(width) * height * 3;
  if (bytes.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("raw RGB image of ", width, "x", height,
                                                   " needs ", expected, " bytes; got ",
                                                   bytes.size()));
  }
  RgbImage image{width, height, std::vector<uint8_t>(bytes.begin(), bytes.end())};
  return image;
}

bool IsSoftTokenBudget(int32_t max_soft_tokens) {
  return std::find(std::begin(kSoftTokenBudgets), std::end(kSoftTokenBudgets), max_soft_tokens) !=
         std::end(kSoftTokenBudgets);
}

absl::StatusOr<std::pair<int32_t, int32_t>> ResizedImageSize(int32_t height, int32_t width,
                                                             int32_t max_soft_tokens) {
  if (!IsSoftTokenBudget(max_soft_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat("max_soft_tokens is ", max_soft_tokens,
                                                   "; it must be one of 70, 140, 280, 560, 1120"));
  }
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", width, "x", height, " pixels; both sides must be at least 1"));
  }
  // The reference scales the image area to max_soft_tokens * 9 patches of 16x16 pixels, then
  // floors each side to a multiple of 48 (3x3 patches pool into one soft token).
  const double target_pixels = static_cast<double>(max_soft_tokens) * 9 * 16 * 16;
  const double factor = std::sqrt(target_pixels / (static_cast<double>(height) * width));
  int64_t rows = static_cast<int64_t>(std::floor(height * factor / kPatchSide));
  int64_t cols = static_cast<int64_t>(std::floor(width * factor / kPatchSide));
  rows = std::clamp<int64_t>(rows, 1, max_soft_tokens);
  cols = std::clamp<int64_t>(cols, 1, max_soft_tokens);
  rows = std::min<int64_t>(rows, max_soft_tokens / cols);
  cols = std::min<int64_t>(cols, max_soft_tokens / rows);
  return std::make_pair(static_cast<int32_t>(rows * kPatchSide),
                        static_cast<int32_t>(cols * kPatchSide));
}

RgbImage ResizeBicubic(const RgbImage& image, int32_t out_width, int32_t out_height) {
  RgbImage out = image;
  if (out_width != out.width) out = ResampleHorizontal(out, out_width);
  if (out_height != out.height) out = ResampleVertical(out, out_height);
  return out;
}

MediaItem PatchifyImage(const RgbImage& image) {
  MediaItem item;
  item.kind = MediaKind::kImage;
  item.width = image.width;
  item.height = image.height;
  const int32_t rows = image.height / kPatchSide, cols = image.width / kPatchSide;
  item.num_rows = rows * cols;
  item.rows.resize(static_cast<size_t>(item.num_rows) * kPatchValues);
  item.positions.resize(static_cast<size_t>(item.num_rows) * 2);
  // The reference rescales with a float32 multiply by 1/255 (not a division).
  const float scale = static_cast<float>(1.0 / 255.0);
  float* dst = item.rows.data();
  for (int32_t py = 0; py < rows; ++py) {
    for (int32_t px = 0; px < cols; ++px) {
      const int32_t n = py * cols + px;
      item.positions[2 * n] = px;
      item.positions[2 * n + 1] = py;
      for (int32_t r = 0; r < kPatchSide; ++r) {
        const uint8_t* src =
            image.pixels.data() + (static_cast<size_t>(py * kPatchSide + r) * image.width +
                                   static_cast<size_t>(px) * kPatchSide) *
                                      3;
        for (int32_t i = 0; i < kPatchSide * 3; ++i) *dst++ = static_cast<float>(src[i]) * scale;
      }
    }
  }
  item.hash = HashMediaItem(item);
  return item;
}

absl::StatusOr<MediaItem> PreprocessImage(const RgbImage& image, int32_t max_soft_tokens) {
  absl::StatusOr<std::pair<int32_t, int32_t>> size =
      ResizedImageSize(image.height, image.width, max_soft_tokens);
  if (!size.ok()) return size.status();
  if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return absl::InvalidArgumentError("image pixel buffer does not match its size");
  }
  return PatchifyImage(ResizeBicubic(image, size->second, size->first));
}

}  // namespace tessera::runtime
