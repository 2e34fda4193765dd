// One training sample from one stored image: resize to the output size with a random horizontal
// flip and optional zoom/shift jitter (one affine map, one bilinear pass), then optional colour
// jitter. Every random number comes from the caller's Philox stream, so a sample depends only on
// (seed, epoch, record) and not on which worker thread made it.
#pragma once
#include "face/image/image.h"
#include "engine/philox.h"

namespace cuface {

struct AugmentOptions {
  bool flip = true;          // mirror left-right with probability 1/2
  float scale_jitter = 0;    // zoom factor uniform in [1 - j, 1 + j] about the centre
  float shift_jitter = 0;    // shift uniform in [-j, j] x output side, each axis
  float colour_jitter = 0;   // brightness, contrast, saturation factors uniform in [1 - j, 1 + j]
};

// Writes size x size x 3 bytes to dst. With no jitter and source side == size this is a copy (or a
// mirrored copy), so raw shards at the training size cost one memcpy per image.
void render_sample(const ImageView& source, int size, const AugmentOptions& options, Philox& rng, uint8_t* dst);

}  // namespace cuface
