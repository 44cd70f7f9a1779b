#include "runtime/model/model_loader.h"

#include "base/logging.h"

namespace tessera::runtime {

absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const std::string& dir) {
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return config.status();
  auto ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  auto weights = BindWeights(*config, std::move(*ckpt));
  if (!weights.ok()) return weights.status();
  auto model = std::make_shared<LoadedModel>();
  model->dir = dir;
  model->config = std::move(*config);
  model->weights = std::move(*weights);
  TESSERA_LOG(INFO) << "loaded " << dir << ": " << model->config.text.num_layers
                    << " layers, hidden " << model->config.text.hidden_size << ", vocab "
                    << model->config.text.vocab_size << ", "
                    << model->weights->total_bytes / (1 << 20) << " MiB of weights";
  return std::shared_ptr<const LoadedModel>(std::move(model));
}

}  // namespace tessera::runtime
