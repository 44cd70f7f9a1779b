// Gemma 4 configs as config.json text, for benchmarks and tests that need real shapes without a
// checkpoint: the published Gemma 4 12B (docs/MODEL.md's shapes; MODEL.md states no
// intermediate_size, mm_embed_dim or mm_posemb_size: 15360, 3840 and 1120 are the values for which
// the parameter count of these shapes is exactly the published 11,959,730,224, which model_bench
// recomputes) and the shape of testdata/gemma4-tiny.
#pragma once

#include <string>

namespace tessera::runtime::cuda {

std::string Gemma4_12BConfigJson();
std::string Gemma4TinyShapeConfigJson();

}  // namespace tessera::runtime::cuda
