// Replays every input kept in a fuzz corpus folder (seeds and past findings) through a fuzz target's
// checks: shared by the *_regression_test targets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::testing {

// `check` returns "" when an input passes, else what went wrong. Fails the test when the folder has
// fewer than `min_files` inputs (the seeds went missing).
template <typename Check>
void ReplayCorpus(const std::string& dir, size_t min_files, Check check) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), min_files) << "the seeds in " << dir << " are missing";
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(check(reinterpret_cast<const uint8_t*>(data.data()), data.size()), "") << path;
  }
}

}  // namespace tessera::testing
