#include "runtime/model/model_loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_model.h"
#include "runtime/model/gguf_tokenizer.h"

namespace tessera::runtime {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string DirOf(const std::string& file) {
  const std::string parent = std::filesystem::path(file).parent_path().string();
  return parent.empty() ? "." : parent;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadSafetensors(const std::string& dir) {
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  auto ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  auto weights = BindWeights(*config, std::move(*ckpt));
  if (!weights.ok()) return weights.status();
  auto model = std::make_shared<LoadedModel>();
  model->path = dir;
  model->dir = dir;
  model->format = ModelFormat::kSafetensors;
  model->config = std::move(*config);
  model->weights = std::move(*weights);
  return std::shared_ptr<const LoadedModel>(std::move(model));
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadGguf(const std::string& text_path,
                                                            const std::string& mmproj_path) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> text, GgufFile::Open(text_path));
  std::shared_ptr<const GgufFile> mmproj;
  if (!mmproj_path.empty()) {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> m, GgufFile::Open(mmproj_path));
    mmproj = std::move(m);
  }
  TESSERA_ASSIGN_OR_RETURN(ModelConfig config, GgufModelConfig(*text, mmproj.get()));
  auto model = std::make_shared<LoadedModel>();
  model->path = text_path;
  model->dir = DirOf(text_path);
  model->format = ModelFormat::kGguf;
  model->mmproj_path = mmproj_path;
  auto tokenizer = GgufTokenizerJson(*text);
  if (tokenizer.ok()) {
    model->tokenizer_json = std::move(*tokenizer);
  } else if (tokenizer.status().code() != absl::StatusCode::kNotFound) {
    return tokenizer.status();
  }
  auto chat_template = GgufChatTemplate(*text);
  if (chat_template.ok()) {
    model->chat_template = std::move(*chat_template);
  } else if (chat_template.status().code() != absl::StatusCode::kNotFound) {
    return chat_template.status();
  }
  std::shared_ptr<const GgufFile> shared_text = std::move(text);
  TESSERA_ASSIGN_OR_RETURN(model->weights, BindGgufWeights(config, shared_text, mmproj));
  model->config = std::move(config);
  return std::shared_ptr<const LoadedModel>(std::move(model));
}

// The text GGUF and the mmproj GGUF of a directory, told apart by general.architecture.
absl::Status FindGgufFiles(const std::string& dir, std::string* text, std::string* mmproj) {
  std::vector<std::string> texts, mmprojs, others;
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".gguf" && entry.is_regular_file()) {
      files.push_back(entry.path().string());
    }
  }
  if (ec) return absl::NotFoundError("cannot list " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> g, GgufFile::Open(f));
    auto arch = g->GetString("general.architecture");
    if (!arch.ok()) return arch.status();
    if (*arch == "clip") {
      mmprojs.push_back(f);
    } else {
      texts.push_back(f);
    }
  }
  if (texts.empty()) {
    return absl::NotFoundError(
        dir + " holds neither config.json (a safetensors checkpoint) nor a " + "text GGUF file");
  }
  if (texts.size() > 1) {
    return absl::InvalidArgumentError(dir + " holds several text GGUF files (" +
                                      absl::StrJoin(texts, ", ") + "); name one with --model");
  }
  if (mmprojs.size() > 1) {
    return absl::InvalidArgumentError(dir + " holds several mmproj GGUF files (" +
                                      absl::StrJoin(mmprojs, ", ") + "); name one with --mmproj");
  }
  *text = texts[0];
  if (mmproj->empty() && !mmprojs.empty()) *mmproj = mmprojs[0];
  return absl::OkStatus();
}

std::string TypeHistogram(const GgufFile& f) {
  std::map<std::string, int> count;
  for (const GgufTensor& t : f.tensors()) ++count[GgmlTypeName(t.type)];
  std::vector<std::string> parts;
  for (const auto& [name, n] : count) parts.push_back(absl::StrCat(n, " ", name));
  return absl::StrJoin(parts, ", ");
}

}  // namespace

absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const std::string& path,
                                                             const LoadModelOptions& options) {
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model;
  if (IsDirectory(path) && IsFile(path + "/config.json")) {
    if (!options.mmproj.empty()) {
      return absl::InvalidArgumentError(
          "--mmproj " + options.mmproj + " applies to GGUF models; " + path +
          " is a safetensors checkpoint (its vision and audio weights are in it)");
    }
    model = LoadSafetensors(path);
  } else if (IsDirectory(path)) {
    std::string text, mmproj = options.mmproj;
    TESSERA_RETURN_IF_ERROR(FindGgufFiles(path, &text, &mmproj));
    model = LoadGguf(text, mmproj);
  } else if (IsFile(path)) {
    model = LoadGguf(path, options.mmproj);
  } else {
    return absl::NotFoundError(path + " is neither a model directory nor a GGUF file");
  }
  if (!model.ok()) return model.status();
  TESSERA_LOG(INFO) << "loaded " << DescribeModel(**model);
  return model;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const LoadedModel& model) {
  if (!model.tokenizer_json.empty()) {
    auto t = Tokenizer::FromJson(model.tokenizer_json);
    if (!t.ok()) {
      return absl::Status(
          t.status().code(),
          absl::StrCat(model.path, ": its tokenizer.ggml.* metadata: ", t.status().message()));
    }
    return t;
  }
  return Tokenizer::FromFile(model.dir + "/tokenizer.json");
}

std::string DescribeModel(const LoadedModel& model) {
  const ModelConfig& c = model.config;
  std::string s = absl::StrCat(model.path, ": ", c.text.num_layers, " layers, hidden ",
                               c.text.hidden_size, ", vocab ", c.text.vocab_size);
  if (model.weights != nullptr) {
    absl::StrAppend(&s, ", ", model.weights->total_bytes / (1 << 20), " MiB of weights");
    if (model.weights->gguf != nullptr) {
      absl::StrAppend(&s, " (GGUF tensors: ", TypeHistogram(*model.weights->gguf), ")");
    }
    if (model.weights->gguf_mmproj != nullptr) {
      absl::StrAppend(&s, "; mmproj ", model.mmproj_path, " (",
                      TypeHistogram(*model.weights->gguf_mmproj), ")");
    }
  }
  absl::StrAppend(&s, c.vision.present ? ", vision" : "", c.audio.present ? ", audio" : "");
  return s;
}

}  // namespace tessera::runtime
