#include "face/image/align.h"

#include <cmath>

namespace cuface {

Landmarks arcface_template(int size) {
  static const Landmarks reference = {{{38.2946, 51.6963},
                                       {73.5318, 51.5014},
                                       {56.0252, 71.7366},
                                       {41.5493, 92.3655},
                                       {70.7299, 92.2041}}};
  const double scale = size / 112.0;
  Landmarks points;
  for (int i = 0; i < kLandmarkCount; ++i) points[i] = {reference[i].x * scale, reference[i].y * scale};
  return points;
}

bool estimate_similarity(const Point* from, const Point* to, int count, Affine& out) {
  if (count < 2) return false;
  Point mean_from, mean_to;
  for (int i = 0; i < count; ++i) {
    mean_from.x += from[i].x / count;
    mean_from.y += from[i].y / count;
    mean_to.x += to[i].x / count;
    mean_to.y += to[i].y / count;
  }
  double real = 0, imag = 0, norm = 0;  // sum conj(z) w and sum |z|^2 over centred points
  for (int i = 0; i < count; ++i) {
    const double zx = from[i].x - mean_from.x, zy = from[i].y - mean_from.y;
    const double wx = to[i].x - mean_to.x, wy = to[i].y - mean_to.y;
    real += zx * wx + zy * wy;
    imag += zx * wy - zy * wx;
    norm += zx * zx + zy * zy;
  }
  if (!(norm > 1e-12) || !std::isfinite(norm)) return false;
  const double qr = real / norm, qi = imag / norm;
  out.a = qr;
  out.b = -qi;
  out.d = qi;
  out.e = qr;
  out.c = mean_to.x - (qr * mean_from.x - qi * mean_from.y);
  out.f = mean_to.y - (qi * mean_from.x + qr * mean_from.y);
  return std::abs(out.determinant()) > 1e-12;
}

bool alignment_map(const Landmarks& landmarks, int size, Affine& dst_to_src) {
  const Landmarks target = arcface_template(size);
  Affine src_to_dst;
  if (!estimate_similarity(landmarks.data(), target.data(), kLandmarkCount, src_to_dst)) return false;
  dst_to_src = src_to_dst.inverse();
  return true;
}

}  // namespace cuface
