// Integrity checks of JPEG and PNG streams that stb_image does not make. stb decodes what it can:
// it ignores PNG chunk CRCs and fills the missing blocks of a cut-off or damaged JPEG, so a corrupt
// file would be packed or embedded as if it were fine. libjpeg-turbo and libpng (Debian's
// libjpeg62-turbo and libpng16) read the whole stream first and refuse it on the first sign of
// damage; stb then decodes the pixels, so an intact image gives exactly the pixels it always gave.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cuface {

// What a check found: an intact stream with its dimensions, or the reason it is refused.
struct StreamCheck {
  bool intact = false;
  bool too_large = false;  // dimensions above the caller's pixel limit (nothing decoded)
  int width = 0, height = 0;
  std::string error;
};

// The whole JPEG: markers, every entropy-coded segment (at 1/8 scale, so checking costs a fraction
// of a decode) up to EOI. libjpeg's corrupt-data warnings ("premature end of data segment", "bad
// Huffman code", a missing EOI, ...) count as errors. At most 1,000 progressive scans.
StreamCheck check_jpeg_stream(const uint8_t* bytes, size_t size, int64_t max_pixels);

// The whole PNG: every chunk's CRC (critical and ancillary), the zlib stream of the image data
// (with its Adler-32) and IEND.
StreamCheck check_png_stream(const uint8_t* bytes, size_t size, int64_t max_pixels);

}  // namespace cuface
