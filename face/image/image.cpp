// Decoding and encoding through stb_image / stb_image_write. Their implementations are compiled
// here, in this one file, so the program depends on no stb shared library at run time. JPEG and PNG
// streams are checked whole by libjpeg-turbo / libpng first (face/image/integrity.h): stb is lax.
#include "face/image/image.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "engine/error.h"
#include "face/image/integrity.h"

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

// stb_image 2.27 (Debian 12's libstb) trusts the 16 code counts of a JPEG DHT segment: when they
// sum past the 256 symbols its tables hold, it writes beyond them (fixed upstream in 2.28). Every
// FF C4 pair in the file is checked as a DHT segment, not only the ones a marker walk would reach,
// so no disagreement between this scan and stb's parser can let one through. (FF C4 cannot occur in
// entropy-coded data; inside other segments a chance FF C4 is checked too, and only refused when
// its "counts" would overflow stb.)
static bool huffman_tables_fit(const uint8_t* p, size_t n) {
  for (size_t i = 0; i + 4 <= n; ++i) {
    if (p[i] != 0xFF || p[i + 1] != 0xC4) continue;
    const size_t end = std::min(n, i + 2 + ((size_t(p[i + 2]) << 8) | p[i + 3]));
    for (size_t table = i + 4; table < end;) {  // each table: class/id byte, 16 counts, symbols
      size_t symbols = 0;
      for (size_t k = 1; k <= 16 && table + k < n; ++k) symbols += p[table + k];
      if (symbols > 256) return false;
      table += 17 + symbols;
    }
  }
  return true;
}

// The maxval of a binary PGM/PPM header ("P5"/"P6", width, height, maxval; '#' comments), or -1
// when the bytes are not one. stb 2.27 reads 16-bit samples (maxval > 255) in the wrong byte order.
static long pnm_maxval(const uint8_t* p, size_t n) {
  if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6')) return -1;
  size_t i = 2;
  long value = -1;
  for (int field = 0; field < 3; ++field) {
    for (;;) {  // whitespace and comments
      while (i < n && std::isspace(p[i])) ++i;
      if (i < n && p[i] == '#') {
        while (i < n && p[i] != '\n' && p[i] != '\r') ++i;
      } else {
        break;
      }
    }
    value = 0;
    if (i >= n || !std::isdigit(p[i])) return -1;
    while (i < n && std::isdigit(p[i]) && value < (1L << 24)) value = value * 10 + (p[i++] - '0');
  }
  return value;
}

static std::string too_large(int width, int height) {
  return "too large: " + std::to_string(width) + "x" + std::to_string(height) + " pixels (at most " +
         std::to_string(kMaxDecodedPixels >> 20) + " megapixels are decoded)";
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
  if (bytes[0] == 0xFF && !huffman_tables_fit(bytes, size)) {  // what stb would parse as JPEG starts with FF
    error = "corrupt JPEG (Huffman table with more than 256 codes)";
    return false;
  }
  if (pnm_maxval(bytes, size) > 255) {
    error = "16-bit PGM/PPM is not supported";
    return false;
  }
  Encoding container;
  if (sniff_encoding(bytes, size, container)) {
    const StreamCheck check = container == Encoding::Jpeg ? check_jpeg_stream(bytes, size, kMaxDecodedPixels)
                                                          : check_png_stream(bytes, size, kMaxDecodedPixels);
    if (check.too_large) {
      error = too_large(check.width, check.height);
      return false;
    }
    if (!check.intact) {
      error = std::string("corrupt ") + (container == Encoding::Jpeg ? "JPEG" : "PNG") + " (" + check.error + ")";
      return false;
    }
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, int(size), &width, &height, &channels)) {
    error = std::string("not a decodable image (") + stbi_failure_reason() + ")";
    return false;
  }
  if (width <= 0 || height <= 0) {
    error = "implausible size " + std::to_string(width) + "x" + std::to_string(height);
    return false;
  }
  if (int64_t(width) * height > kMaxDecodedPixels) {
    error = too_large(width, height);
    return false;
  }
  // The file's own channels (req_comp 0), expanded to RGB here: stb 2.27's own channel conversion
  // of 16-bit images reads past its buffer (fixed upstream in 2.28); this path never runs it.
  std::unique_ptr<uint8_t, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes, int(size), &width, &height, &channels, 0), stbi_image_free);
  if (!pixels) {
    error = std::string("decode failed (") + stbi_failure_reason() + ")";
    return false;
  }
  if (channels < 1 || channels > 4) {
    error = "unsupported channel count " + std::to_string(channels);
    return false;
  }
  out.width = width;
  out.height = height;
  out.channels = 3;
  const size_t count = size_t(width) * height;
  if (channels == 3) {
    out.pixels.assign(pixels.get(), pixels.get() + count * 3);
    return true;
  }
  out.pixels.resize(count * 3);
  const uint8_t* in = pixels.get();
  uint8_t* rgb = out.pixels.data();
  for (size_t i = 0; i < count; ++i, in += channels, rgb += 3) {
    if (channels <= 2) {  // grey (+ alpha): three equal channels
      rgb[0] = rgb[1] = rgb[2] = in[0];
    } else {              // RGBA: alpha dropped
      rgb[0] = in[0], rgb[1] = in[1], rgb[2] = in[2];
    }
  }
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
