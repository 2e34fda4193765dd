// Images in memory and their file encodings. An Image is 8-bit interleaved HWC; decoding always
// yields 3 channels (RGB): grayscale sources (LFW's copy, ORL, Yale) are expanded, so every later
// stage (alignment, the loader, the network's first convolution) sees one layout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cuface {

// Borrowed pixels in the same layout (a raw pack record, a decoded image).
struct ImageView {
  const uint8_t* pixels = nullptr;
  int width = 0;
  int height = 0;
  int channels = 3;
};

struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // height * width * channels bytes, rows top to bottom

  Image() = default;
  Image(int width, int height, int channels = 3)
      : width(width), height(height), channels(channels), pixels(size_t(width) * height * channels) {}
  bool empty() const { return pixels.empty(); }
  uint8_t* row(int y) { return pixels.data() + size_t(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + size_t(y) * width * channels; }
  ImageView view() const { return {pixels.data(), width, height, channels}; }
};

// How an image's bytes are stored in a pack record. The values are part of the pack format.
enum class Encoding : uint8_t { Raw = 0, Jpeg = 1, Png = 2 };
const char* encoding_name(Encoding encoding);  // "raw", "jpeg", "png"

// Decoders refuse images with more pixels than this (a corrupt header can claim 65535 x 65535).
constexpr int64_t kMaxDecodedPixels = int64_t(1) << 26;

// Decodes JPEG (baseline and progressive), PNG, PGM/PPM, GIF (first frame) and BMP into 3-channel
// RGB. Returns false and sets `error` to the reason on any malformed input; never crashes or throws.
bool decode_image(const uint8_t* bytes, size_t size, Image& out, std::string& error);

// The container format from the first bytes (JPEG or PNG), for storing source bytes as they are.
// Returns false for anything else (PGM, GIF, BMP are re-encoded when packed).
bool sniff_encoding(const uint8_t* bytes, size_t size, Encoding& encoding);

// Encoders for pack records. JPEG quality 1..100; stb encodes baseline JPEG with 4:2:0 chroma at
// quality <= 90 and 4:4:4 above.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality);
std::vector<uint8_t> encode_png(const Image& image);

// Whole-file read; throws cuface::Error naming the file when it cannot be read.
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace cuface
