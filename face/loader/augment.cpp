#include "face/loader/augment.h"

#include <algorithm>
#include <cstring>

#include "face/image/warp.h"

namespace cuface {

namespace {

bool is_identity(const Affine& m) { return m.a == 1 && m.b == 0 && m.c == 0 && m.d == 0 && m.e == 1 && m.f == 0; }
bool is_mirror(const Affine& m, int size) {
  return m.a == -1 && m.b == 0 && m.c == size - 1 && m.d == 0 && m.e == 1 && m.f == 0;
}

// Brightness (scale), contrast (blend with the image's mean grey) and saturation (blend with each
// pixel's grey), in that order, clamped once at the end. Grey = ITU-R 601 luma, as torchvision.
void colour_jitter(uint8_t* pixels, int count, float brightness, float contrast, float saturation) {
  double grey_sum = 0;
  for (int i = 0; i < count; ++i)
    grey_sum += 0.299 * pixels[3 * i] + 0.587 * pixels[3 * i + 1] + 0.114 * pixels[3 * i + 2];
  const float mean = float(grey_sum / count) * brightness;
  for (int i = 0; i < count; ++i) {
    uint8_t* p = pixels + 3 * i;
    float r = p[0] * brightness, g = p[1] * brightness, b = p[2] * brightness;
    r = mean + contrast * (r - mean);
    g = mean + contrast * (g - mean);
    b = mean + contrast * (b - mean);
    const float grey = 0.299f * r + 0.587f * g + 0.114f * b;
    p[0] = uint8_t(std::clamp(grey + saturation * (r - grey), 0.0f, 255.0f) + 0.5f);
    p[1] = uint8_t(std::clamp(grey + saturation * (g - grey), 0.0f, 255.0f) + 0.5f);
    p[2] = uint8_t(std::clamp(grey + saturation * (b - grey), 0.0f, 255.0f) + 0.5f);
  }
}

}  // namespace

void render_sample(const ImageView& source, int size, const AugmentOptions& options, Philox& rng, uint8_t* dst) {
  // Draws in a fixed order, only for the enabled augmentations.
  const bool flip = options.flip && (rng.next_u32() & 1u);
  const float zoom = options.scale_jitter > 0 ? 1 + options.scale_jitter * (2 * rng.next_float() - 1) : 1.0f;
  float shift_x = 0, shift_y = 0;
  if (options.shift_jitter > 0) {
    shift_x = options.shift_jitter * size * (2 * rng.next_float() - 1);
    shift_y = options.shift_jitter * size * (2 * rng.next_float() - 1);
  }

  // Output pixel p -> jittered p' = centre + (p - centre) / zoom - shift -> source via resize.
  const double centre = (size - 1) / 2.0;
  Affine jitter;
  jitter.a = jitter.e = 1.0 / zoom;
  jitter.c = centre - centre / zoom - shift_x;
  jitter.f = centre - centre / zoom - shift_y;
  Affine map = compose(resize_map(source.width, source.height, size, size), jitter);
  if (flip) map = compose(map, mirror_map(size));

  const size_t row_bytes = size_t(size) * 3;
  if (source.channels == 3 && source.width == size && source.height == size && is_identity(map)) {
    std::memcpy(dst, source.pixels, row_bytes * size);
  } else if (source.channels == 3 && source.width == size && source.height == size && is_mirror(map, size)) {
    for (int y = 0; y < size; ++y) {
      const uint8_t* in = source.pixels + y * row_bytes;
      uint8_t* out = dst + y * row_bytes;
      for (int x = 0; x < size; ++x) std::memcpy(out + 3 * x, in + 3 * (size - 1 - x), 3);
    }
  } else {
    warp_affine(source, map, size, size, dst);
  }

  if (options.colour_jitter > 0) {
    const float j = options.colour_jitter;
    const float brightness = 1 + j * (2 * rng.next_float() - 1);
    const float contrast = 1 + j * (2 * rng.next_float() - 1);
    const float saturation = 1 + j * (2 * rng.next_float() - 1);
    colour_jitter(dst, size * size, brightness, contrast, saturation);
  }
}

}  // namespace cuface
