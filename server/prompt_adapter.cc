#include "server/prompt_adapter.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/chat_template.h"
#include "runtime/image.h"
#include "runtime/media_hash.h"

namespace tessera::server {
namespace {

uint32_t Le32(const std::string& b, size_t at) {
  return static_cast<uint32_t>(static_cast<uint8_t>(b[at])) |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 2])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 3])) << 24;
}
uint16_t Le16(const std::string& b, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[at]) | static_cast<uint8_t>(b[at + 1]) << 8);
}

// RIFF/WAVE: PCM 8/16/24/32-bit integer or 32-bit float, any channel count, downmixed to mono.
absl::Status DecodeWav(const std::string& b, std::vector<float>* mono, int* rate) {
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) {
    return absl::InvalidArgumentError("the audio is not a RIFF/WAVE file");
  }
  int format = 0, channels = 0, bits = 0;
  size_t at = 12;
  while (at + 8 <= b.size()) {
    const std::string id = b.substr(at, 4);
    const size_t size = Le32(b, at + 4);
    const size_t body = at + 8;
    if (size > b.size() - body) {
      if (id != "data") return absl::InvalidArgumentError("the WAV file is truncated");
    }
    if (id == "fmt ") {
      if (size < 16) return absl::InvalidArgumentError("the WAV fmt chunk is too short");
      format = Le16(b, body);
      channels = Le16(b, body + 2);
      *rate = static_cast<int>(Le32(b, body + 4));
      bits = Le16(b, body + 14);
      if (format == 0xFFFE && size >= 26) format = Le16(b, body + 24);  // WAVE_FORMAT_EXTENSIBLE.
    } else if (id == "data") {
      if (channels <= 0 || *rate < 1000 || *rate > 384000) {
        return absl::InvalidArgumentError(
            "the WAV file has no valid fmt chunk before its data (channels, 1000..384000 Hz)");
      }
      const bool pcm = format == 1 && (bits == 8 || bits == 16 || bits == 24 || bits == 32);
      const bool flt = format == 3 && bits == 32;
      if (!pcm && !flt) {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported WAV encoding (format ", format, ", ", bits,
                         " bits); use PCM 8/16/24/32-bit or 32-bit float"));
      }
      const size_t bytes = bits / 8;
      const size_t avail = std::min(size, b.size() - body);
      const size_t frames = avail / (bytes * channels);
      mono->resize(frames);
      for (size_t f = 0; f < frames; ++f) {
        double sum = 0;
        for (int c = 0; c < channels; ++c) {
          const size_t p = body + (f * channels + c) * bytes;
          double v;
          if (flt) {
            const uint32_t u = Le32(b, p);
            float x;
            std::memcpy(&x, &u, 4);
            v = std::isfinite(x) ? x : 0.0;
          } else if (bits == 8) {
            v = (static_cast<uint8_t>(b[p]) - 128) / 128.0;
          } else if (bits == 16) {
            v = static_cast<int16_t>(Le16(b, p)) / 32768.0;
          } else if (bits == 24) {
            int32_t x = static_cast<int32_t>(static_cast<uint8_t>(b[p]) |
                                             static_cast<uint8_t>(b[p + 1]) << 8 |
                                             static_cast<uint8_t>(b[p + 2]) << 16);
            if (x & 0x800000) x -= 0x1000000;
            v = x / 8388608.0;
          } else {
            v = static_cast<int32_t>(Le32(b, p)) / 2147483648.0;
          }
          sum += v;
        }
        (*mono)[f] = static_cast<float>(std::clamp(sum / channels, -1.0, 1.0));
      }
      return absl::OkStatus();
    }
    at = body + size + (size & 1);
  }
  return absl::InvalidArgumentError("the WAV file has no data chunk");
}

// NOTE: linear interpolation to 16 kHz (the runtime's soxr resampler replaces this when its audio
// preprocessing is integrated); 16 kHz input is copied as is.
std::vector<float> To16k(const std::vector<float>& in, int rate) {
  if (rate == runtime::kAudioSampleRate) return in;
  const double step = static_cast<double>(rate) / runtime::kAudioSampleRate;
  std::vector<float> out;
  out.reserve(static_cast<size_t>(in.size() / step) + 1);
  for (double pos = 0; pos + 1 < in.size(); pos += step) {
    const size_t i = static_cast<size_t>(pos);
    const double f = pos - i;
    out.push_back(static_cast<float>(in[i] * (1 - f) + in[i + 1] * f));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PromptAdapter>> PromptAdapter::Create(
    const runtime::ModelConfig& config, const runtime::Tokenizer* tokenizer,
    const std::string& model_dir, const RequestLimits& limits, int32_t max_prompt_tokens) {
  std::unique_ptr<PromptAdapter> a(new PromptAdapter());
  a->tokenizer_ = tokenizer;
  a->config_ = config;
  a->limits_ = limits;
  a->bos_ = config.text.bos_token_id;
  a->max_prompt_tokens_ = max_prompt_tokens;
  return a;
}

absl::StatusOr<runtime::MediaItem> PromptAdapter::Image(const v1::Image& image) const {
  runtime::ImageLimits il;
  il.max_side = limits_.max_image_side;
  il.max_pixels = limits_.max_image_pixels;
  absl::StatusOr<runtime::RgbImage> rgb;
  if (image.source_case() == v1::Image::kEncoded) {
    if (static_cast<int64_t>(image.encoded().size()) > limits_.max_image_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("an image is ", image.encoded().size(), " bytes; the limit is ",
                       limits_.max_image_bytes, " (--max_image_bytes)"));
    }
    rgb = runtime::DecodeImage(image.encoded(), il);
  } else if (image.source_case() == v1::Image::kRawRgb) {
    rgb = runtime::RgbFromRaw(image.raw_rgb(), static_cast<int32_t>(image.width()),
                              static_cast<int32_t>(image.height()), il);
  } else {
    return absl::InvalidArgumentError("an image has neither encoded nor raw_rgb bytes");
  }
  if (!rgb.ok()) return rgb.status();
  const int32_t budget = image.has_max_soft_tokens() ? static_cast<int32_t>(image.max_soft_tokens())
                                                     : limits_.default_image_tokens;
  if (!runtime::IsSoftTokenBudget(budget) || budget > limits_.max_image_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image max_soft_tokens is ", budget, "; use 70, 140, 280, 560 or 1120, at most ",
        limits_.max_image_tokens, " (--max_image_tokens)"));
  }
  auto item = runtime::PreprocessImage(*rgb, budget);
  if (!item.ok()) return item.status();
  if (item->hash == runtime::ContentHash{}) item->hash = runtime::HashMediaItem(*item);
  return item;
}

absl::StatusOr<runtime::MediaItem> PromptAdapter::Audio(const v1::Audio& audio,
                                                        double* seconds_used) const {
  std::vector<float> samples;
  int rate = 0;
  if (audio.source_case() == v1::Audio::kWav) {
    if (static_cast<int64_t>(audio.wav().size()) > limits_.max_audio_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("an audio clip is ", audio.wav().size(), " bytes; the limit is ",
                       limits_.max_audio_bytes, " (--max_audio_bytes)"));
    }
    if (auto s = DecodeWav(audio.wav(), &samples, &rate); !s.ok()) return s;
  } else if (audio.source_case() == v1::Audio::kPcm) {
    rate = static_cast<int>(audio.pcm().sample_rate());
    if (rate < 1000 || rate > 384000) {
      return absl::InvalidArgumentError(
          absl::StrCat("pcm.sample_rate is ", rate, "; it must be 1000..384000"));
    }
    for (float v : audio.pcm().samples()) {
      if (!(v >= -1.0f && v <= 1.0f)) {
        return absl::InvalidArgumentError("pcm samples must be finite and within [-1, 1]");
      }
      samples.push_back(v);
    }
  } else {
    return absl::InvalidArgumentError("an audio part has neither wav nor pcm");
  }
  *seconds_used += static_cast<double>(samples.size()) / rate;
  if (*seconds_used > limits_.max_audio_seconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", *seconds_used, " s of audio; the limit is ",
                     limits_.max_audio_seconds, " s (--max_audio_seconds)"));
  }
  std::vector<float> s16 = To16k(samples, rate);
  if (s16.empty()) return absl::InvalidArgumentError("an audio clip has no samples");
  const size_t frame = runtime::kAudioFrameSamples;
  s16.resize((s16.size() + frame - 1) / frame * frame, 0.0f);
  runtime::MediaItem item;
  item.kind = runtime::MediaKind::kAudio;
  item.num_rows = static_cast<int32_t>(s16.size() / frame);
  item.rows = std::move(s16);
  item.hash = runtime::HashMediaItem(item);
  return item;
}

absl::StatusOr<BuiltPrompt> PromptAdapter::Build(const v1::GenerateRequest& request) const {
  const bool has_messages = request.messages_size() > 0;
  const bool has_prompt = !request.prompt().empty();
  if (has_messages == has_prompt) {
    return absl::InvalidArgumentError("set exactly one of 'messages' or 'prompt'");
  }
  BuiltPrompt out;
  if (has_prompt) {
    out.prompt.token_ids.push_back(bos_);
    const std::vector<int32_t> ids = tokenizer_->Encode(request.prompt());
    out.prompt.token_ids.insert(out.prompt.token_ids.end(), ids.begin(), ids.end());
  } else {
    // The chat template writes one placeholder per image / audio part; each is then expanded to
    // <|image> N x <|image|> <image|> (or the audio equivalents) with the preprocessed item.
    runtime::ChatTemplateInput input;
    std::vector<runtime::MediaItem> items;  // In placeholder order.
    int images = 0;
    double audio_s = 0;
    for (int i = 0; i < request.messages_size(); ++i) {
      const v1::Message& m = request.messages(i);
      const std::string role = m.role() == "assistant" ? "model" : m.role();
      if (role != "system" && role != "developer" && role != "user" && role != "model" &&
          role != "tool") {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", i, "].role '", m.role(),
                         "' is unknown; use system, developer, user, model (assistant) or tool"));
      }
      nlohmann::json content = nlohmann::json::array();
      for (const v1::Part& p : m.parts()) {
        if (p.kind_case() == v1::Part::kText) {
          content.push_back({{"type", "text"}, {"text", p.text()}});
          continue;
        }
        if (role != "user") {
          return absl::InvalidArgumentError(
              absl::StrCat("messages[", i, "]: media parts are accepted in user turns only"));
        }
        if (p.kind_case() == v1::Part::kImage) {
          if (++images > limits_.max_images_per_request) {
            return absl::InvalidArgumentError(
                absl::StrCat("more than ", limits_.max_images_per_request,
                             " images in one request (--max_images_per_request)"));
          }
          auto item = Image(p.image());
          if (!item.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("messages[", i, "]: image: ", item.status().message()));
          }
          items.push_back(*std::move(item));
          content.push_back({{"type", "image"}});
        } else if (p.kind_case() == v1::Part::kAudio) {
          auto item = Audio(p.audio(), &audio_s);
          if (!item.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("messages[", i, "]: audio: ", item.status().message()));
          }
          items.push_back(*std::move(item));
          content.push_back({{"type", "audio"}});
        } else {
          return absl::UnimplementedError(
              absl::StrCat("messages[", i, "]: video parts are not supported by this build yet"));
        }
      }
      // All-text content goes to the template as one string (system turns must be text).
      bool all_text = true;
      std::string joined;
      for (const auto& c : content) {
        if (c["type"] != "text") all_text = false;
        if (all_text) joined += c["text"].get<std::string>();
      }
      input.messages.push_back(
          {{"role", role}, {"content", all_text ? nlohmann::json(joined) : content}});
    }
    input.enable_thinking = request.enable_thinking();
    auto text = runtime::RenderGemma4ChatTemplate(input);
    if (!text.ok()) return text.status();
    const std::vector<int32_t> ids = tokenizer_->Encode(*text);
    std::vector<int32_t>& out_ids = out.prompt.token_ids;
    size_t next_item = 0;
    for (int32_t id : ids) {
      const bool image = id == config_.image_token_id;
      const bool audio = id == config_.audio_token_id;
      if (!image && !audio) {
        out_ids.push_back(id);
        continue;
      }
      if (next_item >= items.size()) {
        return absl::InvalidArgumentError("the text contains a media placeholder token");
      }
      auto item = std::make_shared<runtime::MediaItem>(std::move(items[next_item++]));
      if ((item->kind == runtime::MediaKind::kImage) != image) {
        return absl::InternalError("media placeholders out of order");
      }
      out_ids.push_back(image ? config_.boi_token_id : config_.boa_token_id);
      runtime::MediaRun run;
      run.start = static_cast<int32_t>(out_ids.size());
      out_ids.insert(out_ids.end(), item->num_rows, id);
      run.item = std::move(item);
      out.prompt.media.push_back(std::move(run));
      out_ids.push_back(image ? config_.eoi_token_id : config_.eoa_token_id);
    }
    if (next_item != items.size()) {
      return absl::InvalidArgumentError("a text part contains a media placeholder token");
    }
  }
  if (out.prompt.size() > max_prompt_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", out.prompt.size(),
                                                   " tokens; the limit is ", max_prompt_tokens_,
                                                   " (--max_prompt_tokens / context length)"));
  }
  return out;
}

}  // namespace tessera::server
