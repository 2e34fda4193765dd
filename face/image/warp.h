// Geometric transforms of images: one affine map covers alignment, centre crop, resize, flip and
// the loader's scale/shift jitter, so each output pixel is sampled exactly once (bilinear).
//
// Coordinates are pixel centres at integers (OpenCV's warpAffine convention, which the ArcFace
// template and the LFW landmark file use): pixel (0, 0) covers [-0.5, 0.5) x [-0.5, 0.5).
#pragma once
#include "face/image/image.h"

namespace cuface {

struct Point {
  double x = 0;
  double y = 0;
};

// (x, y) -> (a x + b y + c, d x + e y + f)
struct Affine {
  double a = 1, b = 0, c = 0;
  double d = 0, e = 1, f = 0;

  Point apply(Point p) const { return {a * p.x + b * p.y + c, d * p.x + e * p.y + f}; }
  double determinant() const { return a * e - b * d; }
  Affine inverse() const;  // throws cuface::Error when singular
};

// outer(inner(p)).
Affine compose(const Affine& outer, const Affine& inner);

// The dst -> src map that resizes a src_width x src_height image to dst_width x dst_height
// (pixel areas aligned, as cv2.resize: src = (dst + 0.5) * scale - 0.5).
Affine resize_map(int src_width, int src_height, int dst_width, int dst_height);
// The dst -> src map that takes the largest centred square of the source and resizes it to size x size.
Affine centre_crop_map(int src_width, int src_height, int size);
// The dst -> dst map that mirrors a row of `width` pixels.
Affine mirror_map(int width);

// dst(x, y) = bilinear sample of src at dst_to_src(x, y); samples outside the source read 0 (black).
// `dst` holds width * height * src.channels bytes.
void warp_affine(const ImageView& src, const Affine& dst_to_src, int width, int height, uint8_t* dst);

// Average of each factor x factor block (the remainder at the right and bottom edges is dropped).
Image box_downsample(const Image& src, int factor);

// warp_affine into a new size x size image; when the map shrinks by 2x or more, the source is first
// box-filtered by the integer part of the shrink factor so the bilinear samples do not alias.
Image warp_to_size(const Image& src, const Affine& dst_to_src, int size);

}  // namespace cuface
