// Checks run on one fuzz input against the WAV decoder and the audio path; shared by the
// libFuzzer target (wav_fuzz.cc) and the regression test replaying tests/fuzz/corpus/wav/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera::runtime {

// The bytes go through DecodeWav; a decoded clip must be non-empty, finite, at an accepted rate,
// and its preprocessing must give at most the limit's frames of finite samples (75 frames = 3 s,
// to keep runs fast). Returns an empty string when all holds, otherwise what broke.
std::string CheckWavFuzzInput(const uint8_t* data, size_t size);

}  // namespace tessera::runtime
