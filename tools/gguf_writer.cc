// gguf_writer --model DIR --out FILE.gguf [--type BF16] [--mmproj_out FILE.gguf]
//             [--mmproj_type F32] [--name NAME]
//
// Writes a Gemma 4 safetensors checkpoint (a directory with config.json and model.safetensors,
// e.g. //tools:make_model's output) as llama.cpp's GGUF files: the text model with the metadata and
// tensor names llama.cpp's converter writes, its matrices in --type (F32, F16, BF16, or a
// llama-quantize file type: Q8_0, Q4_0, Q4_1, Q6_K, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, with
// llama-quantize's per-tensor mix), and, with --mmproj_out, the vision + audio projector file.
// The tokenizer (tokenizer.json, tokenizer_config.json) and chat_template.jinja beside the
// checkpoint go into the text file's metadata when present. See tools/gguf_convert.h.
#include <cstdio>
#include <string>

#include "tools/gguf_convert.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: gguf_writer --model DIR --out FILE.gguf [--type BF16|F32|F16|Q8_0|Q4_0|"
               "Q4_1|Q6_K|Q4_K_S|Q4_K_M|Q5_K_S|Q5_K_M] [--mmproj_out FILE.gguf] "
               "[--mmproj_type F32|F16|BF16] [--name NAME]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  tessera::tools::GgufConvertOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], v;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      v = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--help" || arg == "-h" || i + 1 >= argc) {
      return Usage();
    } else {
      v = argv[++i];
    }
    if (arg == "--model") {
      o.model_dir = v;
    } else if (arg == "--out") {
      o.out = v;
    } else if (arg == "--type") {
      o.type = v;
    } else if (arg == "--mmproj_out") {
      o.mmproj_out = v;
    } else if (arg == "--mmproj_type") {
      o.mmproj_type = v;
    } else if (arg == "--name") {
      o.name = v;
    } else {
      std::fprintf(stderr, "gguf_writer: unknown flag %s\n", arg.c_str());
      return Usage();
    }
  }
  if (o.model_dir.empty() || o.out.empty()) return Usage();
  const absl::Status s = tessera::tools::ConvertToGguf(o);
  if (!s.ok()) {
    std::fprintf(stderr, "gguf_writer: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("wrote %s%s%s\n", o.out.c_str(), o.mmproj_out.empty() ? "" : " and ",
              o.mmproj_out.c_str());
  return 0;
}
