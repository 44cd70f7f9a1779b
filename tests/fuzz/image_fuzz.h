// Checks run on one fuzz input against the image decoders and preprocessing; shared by the
// libFuzzer target (image_fuzz.cc) and the regression test replaying tests/fuzz/corpus/image/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera::runtime {

// The bytes go through DecodeImage (PNG/JPEG sniffing) with limits small enough to keep each run
// fast (2 Mpx). A decoded image must hold exactly width x height x 3 bytes within the limits; its
// preprocessing (70 soft tokens) must give at most 70 rows of values in [0, 1], with positions
// inside the resized grid. Returns an empty string when all holds, otherwise what broke.
std::string CheckImageFuzzInput(const uint8_t* data, size_t size);

}  // namespace tessera::runtime
