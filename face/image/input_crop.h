// How any input image becomes the network's size x size face crop, shared by `cuface pack` and
// inference (face/eval/embedder.h), so that a model sees at inference exactly what it was trained on.
// In order of precedence:
//   a detector is given:    the largest face it finds (FaceCropOptions: aligned on its 5 points, or
//                           the padded detector box);
//   alignment is requested: the image's 5 landmarks onto the ArcFace template (face/image/align.h);
//   already size x size:    the image as it is (e.g. InsightFace's aligned 112 x 112 crops);
//   otherwise:              the centred square crop, resized.
#pragma once
#include <string>

#include "face/image/detect.h"

namespace cuface {

struct InputCrop {
  bool ok = false;     // false: the image has no crop, `why` says why
  bool as_is = false;  // the image already is the crop (`map` unused)
  Affine map;          // dst -> src, when ok and not as_is
  std::string why;     // "no face found", "no landmarks in FILE", "degenerate landmarks"
};

// `landmarks`: the image's entry in the landmark file `landmark_file` (null when it has none); used
// only when `align` is set.
InputCrop plan_input_crop(const Image& image, int size, FaceDetector* detector, const FaceCropOptions& crop, bool align,
                          const Landmarks* landmarks, const std::string& landmark_file);

}  // namespace cuface
