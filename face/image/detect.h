// Faces in arbitrary photos: dlib's HOG frontal face detector finds the faces, its 68-point shape
// predictor (Debian's libdlib-data model) places landmarks on the largest one, and the 68 points are
// reduced to the 5 alignment points, so a detected face is aligned exactly as one from a landmark file.
//
// dlib is optional (CMake option CUFACE_DLIB): without it a FaceDetector cannot be constructed and
// says how to get one. Only detect.cpp includes dlib.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "face/image/align.h"

namespace cuface {

// False when cuface was built without dlib; constructing a FaceDetector then throws.
bool face_detection_available();

// Where Debian's libdlib-data installs the 68-point model.
constexpr const char* kDefaultLandmarkModel = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";

// A detected face: its box (pixel-centre coordinates as in warp.h; the box covers
// [left, right] x [top, bottom]) and its 5 alignment points in the order of align.h's Landmarks.
struct FaceDetection {
  double left = 0, top = 0, right = 0, bottom = 0;
  Landmarks landmarks;
};

// Not thread-safe: the HOG scanner keeps its feature pyramid between calls. Use one FaceDetector per
// thread; copies are cheap (a few HOG filters) and share the loaded landmark model, which is
// read-only after loading.
class FaceDetector {
 public:
  // Loads the shape predictor (~95 MB, about a second). Throws cuface::Error when cuface was built
  // without dlib, or when the model file is missing, unreadable or not a 68-point model.
  explicit FaceDetector(const std::string& landmark_model = kDefaultLandmarkModel);
  FaceDetector(const FaceDetector& other);
  FaceDetector& operator=(const FaceDetector&) = delete;
  ~FaceDetector();

  // The largest face (by box area) in an RGB or grayscale image, or nullopt when none is found.
  std::optional<FaceDetection> detect_largest(const Image& image);

 private:
  struct Model;
  struct Scanner;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Scanner> scanner_;
};

// How a detected face becomes a size x size crop.
//   Align: the 5 points onto the ArcFace template (as `--align FILE`); the default.
//   Crop:  the detector's box, made square, enlarged by `pad` of its side on each side and resized,
//          as the original project's detector crop (no rotation).
enum class DetectMode { Align, Crop };
struct FaceCropOptions {
  DetectMode mode = DetectMode::Align;
  float pad = 0.25f;
};

// The dst -> src map of the crop of `face`; false when its landmarks are degenerate (Align).
bool face_crop_map(const FaceDetection& face, int size, const FaceCropOptions& options, Affine& dst_to_src);

// Detects the largest face and returns its size x size crop; nullopt when no face is found.
// The detector is used, not shared: call it from one thread at a time (see FaceDetector).
std::optional<Image> detect_and_align(const Image& image, int size, FaceDetector& detector,
                                      const FaceCropOptions& options = {});

}  // namespace cuface
