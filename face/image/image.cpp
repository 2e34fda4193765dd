// Decoding and encoding through stb_image / stb_image_write. Their implementations are compiled
// here, in this one file, so the program depends on no stb shared library at run time.
#include "face/image/image.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "engine/error.h"

#define STBI_MAX_DIMENSIONS 32768
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_NO_HDR  // 8-bit sources only; HDR/PSD/PIC/TGA are not face data formats
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_TGA
#define STBI_NO_LINEAR
#define STBI_NO_STDIO
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace cuface {

const char* encoding_name(Encoding encoding) {
  switch (encoding) {
    case Encoding::Raw: return "raw";
    case Encoding::Jpeg: return "jpeg";
    case Encoding::Png: return "png";
  }
  return "unknown";
}

bool decode_image(const uint8_t* bytes, size_t size, Image& out, std::string& error) {
  if (size == 0) {
    error = "empty file";
    return false;
  }
  if (size > size_t(INT32_MAX)) {
    error = "file larger than 2 GiB";
    return false;
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, int(size), &width, &height, &channels)) {
    error = std::string("not a decodable image (") + stbi_failure_reason() + ")";
    return false;
  }
  if (width <= 0 || height <= 0 || int64_t(width) * height > kMaxDecodedPixels) {
    error = "implausible size " + std::to_string(width) + "x" + std::to_string(height);
    return false;
  }
  std::unique_ptr<uint8_t, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes, int(size), &width, &height, &channels, 3), stbi_image_free);
  if (!pixels) {
    error = std::string("decode failed (") + stbi_failure_reason() + ")";
    return false;
  }
  out.width = width;
  out.height = height;
  out.channels = 3;
  out.pixels.assign(pixels.get(), pixels.get() + size_t(width) * height * 3);
  return true;
}

bool sniff_encoding(const uint8_t* bytes, size_t size, Encoding& encoding) {
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) {
    encoding = Encoding::Jpeg;
    return true;
  }
  if (size >= 8 && std::memcmp(bytes, png, 8) == 0) {
    encoding = Encoding::Png;
    return true;
  }
  return false;
}

static void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  CUFACE_CHECK(!image.empty() && quality >= 1 && quality <= 100, "encode_jpeg: empty image or quality outside 1..100");
  std::vector<uint8_t> out;
  out.reserve(image.pixels.size() / 4);
  CUFACE_CHECK(stbi_write_jpg_to_func(append_bytes, &out, image.width, image.height, image.channels,
                                      image.pixels.data(), quality),
               "JPEG encoding failed");
  return out;
}

std::vector<uint8_t> encode_png(const Image& image) {
  CUFACE_CHECK(!image.empty(), "encode_png: empty image");
  std::vector<uint8_t> out;
  CUFACE_CHECK(stbi_write_png_to_func(append_bytes, &out, image.width, image.height, image.channels,
                                      image.pixels.data(), image.width * image.channels),
               "PNG encoding failed");
  return out;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) throw Error("cannot open " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  if (std::ferror(file.get())) throw Error("cannot read " + path + ": " + std::strerror(errno));
  return bytes;
}

}  // namespace cuface
