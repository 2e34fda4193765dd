#include "face/image/input_crop.h"

namespace cuface {

InputCrop plan_input_crop(const Image& image, int size, FaceDetector* detector, const FaceCropOptions& crop, bool align,
                          const Landmarks* landmarks, const std::string& landmark_file) {
  InputCrop out;
  if (detector) {
    const std::optional<FaceDetection> face = detector->detect_largest(image);
    if (!face) {
      out.why = "no face found";
      return out;
    }
    if (!face_crop_map(*face, size, crop, out.map)) {
      out.why = "degenerate landmarks";
      return out;
    }
  } else if (align) {
    if (!landmarks) {
      out.why = "no landmarks in " + landmark_file;
      return out;
    }
    if (!alignment_map(*landmarks, size, out.map)) {
      out.why = "degenerate landmarks";
      return out;
    }
  } else if (image.width == size && image.height == size) {
    out.as_is = true;
  } else {
    out.map = centre_crop_map(image.width, image.height, size);
  }
  out.ok = true;
  return out;
}

}  // namespace cuface
