#include "face/image/warp.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace cuface {

Affine Affine::inverse() const {
  const double det = determinant();
  CUFACE_CHECK(std::isfinite(det) && std::abs(det) > 1e-12, "affine map is singular");
  Affine inv;
  inv.a = e / det;
  inv.b = -b / det;
  inv.d = -d / det;
  inv.e = a / det;
  inv.c = -(inv.a * c + inv.b * f);
  inv.f = -(inv.d * c + inv.e * f);
  return inv;
}

Affine compose(const Affine& outer, const Affine& inner) {
  Affine m;
  m.a = outer.a * inner.a + outer.b * inner.d;
  m.b = outer.a * inner.b + outer.b * inner.e;
  m.c = outer.a * inner.c + outer.b * inner.f + outer.c;
  m.d = outer.d * inner.a + outer.e * inner.d;
  m.e = outer.d * inner.b + outer.e * inner.e;
  m.f = outer.d * inner.c + outer.e * inner.f + outer.f;
  return m;
}

Affine resize_map(int src_width, int src_height, int dst_width, int dst_height) {
  Affine m;
  m.a = double(src_width) / dst_width;
  m.e = double(src_height) / dst_height;
  m.c = 0.5 * m.a - 0.5;
  m.f = 0.5 * m.e - 0.5;
  return m;
}

Affine centre_crop_map(int src_width, int src_height, int size) {
  const int side = std::min(src_width, src_height);
  Affine m = resize_map(side, side, size, size);
  m.c += (src_width - side) / 2;
  m.f += (src_height - side) / 2;
  return m;
}

Affine mirror_map(int width) {
  Affine m;
  m.a = -1;
  m.c = width - 1;
  return m;
}

void warp_affine(const ImageView& src, const Affine& dst_to_src, int width, int height, uint8_t* dst) {
  const int W = src.width, H = src.height, C = src.channels;
  const uint8_t* pixels = src.pixels;
  const float a = float(dst_to_src.a), b = float(dst_to_src.b), c = float(dst_to_src.c);
  const float d = float(dst_to_src.d), e = float(dst_to_src.e), f = float(dst_to_src.f);
  // Reads one source pixel's channel, 0 outside the image.
  auto at = [&](int x, int y, int ch) -> float {
    return (x >= 0 && y >= 0 && x < W && y < H) ? pixels[(size_t(y) * W + x) * C + ch] : 0.0f;
  };
  for (int y = 0; y < height; ++y) {
    uint8_t* out = dst + size_t(y) * width * C;
    for (int x = 0; x < width; ++x, out += C) {
      const float sx = a * x + b * y + c, sy = d * x + e * y + f;
      // Far outside (or not a number, from a corrupt map): black. Keeps the int conversion defined.
      if (!(sx > -1.0f && sy > -1.0f && sx < float(W) && sy < float(H))) {
        for (int ch = 0; ch < C; ++ch) out[ch] = 0;
        continue;
      }
      const int x0 = int(std::floor(sx)), y0 = int(std::floor(sy));
      const float wx = sx - float(x0), wy = sy - float(y0);
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {  // all four neighbours inside
        const uint8_t* p = pixels + (size_t(y0) * W + x0) * C;
        const uint8_t* q = p + size_t(W) * C;
        for (int ch = 0; ch < C; ++ch) {
          const float top = float(p[ch]) + wx * float(p[ch + C] - p[ch]);
          const float bottom = float(q[ch]) + wx * float(q[ch + C] - q[ch]);
          out[ch] = uint8_t(top + wy * (bottom - top) + 0.5f);
        }
      } else {
        for (int ch = 0; ch < C; ++ch) {
          const float top = at(x0, y0, ch) + wx * (at(x0 + 1, y0, ch) - at(x0, y0, ch));
          const float bottom = at(x0, y0 + 1, ch) + wx * (at(x0 + 1, y0 + 1, ch) - at(x0, y0 + 1, ch));
          out[ch] = uint8_t(std::clamp(top + wy * (bottom - top) + 0.5f, 0.0f, 255.0f));
        }
      }
    }
  }
}

Image box_downsample(const Image& src, int factor) {
  CUFACE_CHECK(factor >= 1, "box_downsample: factor must be positive");
  Image out(src.width / factor, src.height / factor, src.channels);
  const int C = src.channels;
  const int area = factor * factor;
  std::vector<int> sums(size_t(out.width) * C);
  for (int y = 0; y < out.height; ++y) {
    std::fill(sums.begin(), sums.end(), 0);
    for (int dy = 0; dy < factor; ++dy) {
      const uint8_t* row = src.row(y * factor + dy);
      for (int x = 0; x < out.width * factor; ++x)
        for (int ch = 0; ch < C; ++ch) sums[size_t(x / factor) * C + ch] += row[size_t(x) * C + ch];
    }
    uint8_t* out_row = out.row(y);
    for (size_t i = 0; i < sums.size(); ++i) out_row[i] = uint8_t((sums[i] + area / 2) / area);
  }
  return out;
}

Image warp_to_size(const Image& src, const Affine& dst_to_src, int size) {
  Image out(size, size, src.channels);
  const double shrink = std::sqrt(std::abs(dst_to_src.determinant()));
  const int factor = std::isfinite(shrink) ? int(std::min(shrink, 64.0)) : 1;
  if (factor < 2 || src.width < 2 * factor || src.height < 2 * factor) {
    warp_affine(src.view(), dst_to_src, size, size, out.pixels.data());
    return out;
  }
  // Block (X, Y) of the filtered image is centred on source pixel factor * X + (factor - 1) / 2.
  Affine to_filtered;
  to_filtered.a = to_filtered.e = 1.0 / factor;
  to_filtered.c = to_filtered.f = -0.5 * (factor - 1) / factor;
  warp_affine(box_downsample(src, factor).view(), compose(to_filtered, dst_to_src), size, size, out.pixels.data());
  return out;
}

}  // namespace cuface
