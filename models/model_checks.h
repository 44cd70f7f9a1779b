// Checks shared by the tests of the generated models (testonly).
#pragma once

#include <string>

namespace tessera::models {

// The whole file, or "" (with a test failure) when it cannot be read. Tests run in the runfiles
// tree, where generated files sit at their package paths ("models/default/config.json").
std::string ReadAll(const std::string& path);

// models/<name>/ holds the config and checkpoint that models/<name>.json describes: the runtime's
// config reader agrees with the spec, every tensor is there with its shape, values are the
// generator's for the seed.
void ExpectModelMatchesSpec(const std::string& name);

// The runtime loads models/<name> (binding every tensor with shape checks), and a 40-token greedy
// prefill gives finite, non-constant logits whose argmax is the sampled token.
void ExpectModelRuns(const std::string& name);

}  // namespace tessera::models
