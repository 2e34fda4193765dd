// The only file that includes dlib (it is header-heavy, and optional).
#include "face/image/detect.h"

#include <algorithm>
#include <filesystem>

#include "engine/error.h"
#include "face/image/warp.h"

#if CUFACE_HAS_DLIB
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_processing/shape_predictor.h>
#include <dlib/image_transforms/interpolation.h>
#endif

namespace cuface {

bool face_crop_map(const FaceDetection& face, int size, const FaceCropOptions& options, Affine& dst_to_src) {
  if (options.mode == DetectMode::Align) return alignment_map(face.landmarks, size, dst_to_src);
  // HOG boxes are (nearly) square; a square crop keeps the face's proportions regardless.
  const double side = std::max(face.right - face.left, face.bottom - face.top) * (1.0 + 2.0 * options.pad);
  const double scale = side / size;
  const double centre_x = (face.left + face.right) / 2, centre_y = (face.top + face.bottom) / 2;
  dst_to_src = {scale, 0, centre_x - (size / 2.0 - 0.5) * scale,  //
                0, scale, centre_y - (size / 2.0 - 0.5) * scale};
  return side > 0;
}

std::optional<Image> detect_and_align(const Image& image, int size, FaceDetector& detector,
                                      const FaceCropOptions& options) {
  const std::optional<FaceDetection> face = detector.detect_largest(image);
  Affine map;
  if (!face || !face_crop_map(*face, size, options, map)) return std::nullopt;
  return warp_to_size(image, map, size);
}

#if CUFACE_HAS_DLIB

namespace {

// Photos larger than this (longer side, pixels) are searched box-downsampled by an integer factor:
// the HOG scan's cost grows with the pixel count, and the largest face of such a photo stays well
// above the detector's 80-pixel window. The landmarks are still placed on the full image.
constexpr int kLargestSearchedSide = 2048;
// Images whose longer side is at most this are searched once more at twice the size when nothing
// is found, so faces down to about 40 pixels are found in small photos.
constexpr int kLargestUpsampledSide = 1024;

dlib::array2d<dlib::rgb_pixel> to_dlib(const Image& image) {
  dlib::array2d<dlib::rgb_pixel> out(image.height, image.width);
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* p = image.row(y);
    for (int x = 0; x < image.width; ++x, p += image.channels)
      out[y][x] = image.channels == 3 ? dlib::rgb_pixel(p[0], p[1], p[2]) : dlib::rgb_pixel(p[0], p[0], p[0]);
  }
  return out;
}

// The 68-point (iBUG 300-W) scheme as seen in the image: 36-41 outline the eye on the image's left
// (the subject's right), 36 its outer and 39 its inner corner; 42 and 45 are the other eye's inner and
// outer corners; 30 is the nose tip; 48 and 54 the mouth corners on the image's left and right. The
// landmark file's points are eye centres (image-left eye first), so each eye is its corners' midpoint.
Landmarks five_points(const dlib::full_object_detection& shape) {
  const auto at = [&](unsigned i) { return Point{double(shape.part(i).x()), double(shape.part(i).y())}; };
  const auto midpoint = [&](unsigned i, unsigned j) {
    return Point{(at(i).x + at(j).x) / 2, (at(i).y + at(j).y) / 2};
  };
  return {midpoint(36, 39), midpoint(42, 45), at(30), at(48), at(54)};
}

std::optional<dlib::rectangle> largest(const std::vector<dlib::rectangle>& boxes) {
  const auto by_area = [](const dlib::rectangle& a, const dlib::rectangle& b) { return a.area() < b.area(); };
  if (boxes.empty()) return std::nullopt;
  return *std::max_element(boxes.begin(), boxes.end(), by_area);
}

}  // namespace

struct FaceDetector::Model {
  dlib::shape_predictor predictor;
};

struct FaceDetector::Scanner {
  dlib::frontal_face_detector hog = dlib::get_frontal_face_detector();
};

bool face_detection_available() { return true; }

FaceDetector::FaceDetector(const std::string& landmark_model) {
  if (!std::filesystem::is_regular_file(landmark_model))
    throw Error("landmark model " + landmark_model + " not found (install libdlib-data, " +
                "or point --landmark-model at shape_predictor_68_face_landmarks.dat)");
  auto model = std::make_shared<Model>();
  try {
    dlib::deserialize(landmark_model) >> model->predictor;
  } catch (const std::exception& e) {
    throw Error("cannot read landmark model " + landmark_model + ": " + e.what());
  }
  if (model->predictor.num_parts() != 68)
    throw Error("landmark model " + landmark_model + " has " + std::to_string(model->predictor.num_parts()) +
                " points; --detect needs the 68-point model");
  model_ = std::move(model);
  scanner_ = std::make_unique<Scanner>();
}

FaceDetector::FaceDetector(const FaceDetector& other)
    : model_(other.model_), scanner_(std::make_unique<Scanner>(*other.scanner_)) {}

FaceDetector::~FaceDetector() = default;

std::optional<FaceDetection> FaceDetector::detect_largest(const Image& image) {
  CUFACE_CHECK(!image.empty() && (image.channels == 1 || image.channels == 3),
               "face detection needs a decoded grayscale or RGB image");
  const dlib::array2d<dlib::rgb_pixel> full = to_dlib(image);
  const int longer = std::max(image.width, image.height);
  const int factor = (longer + kLargestSearchedSide - 1) / kLargestSearchedSide;

  dlib::rectangle box;
  if (factor > 1) {
    // Downsampled pixel i averages full pixels factor * i .. factor * i + factor - 1.
    const dlib::array2d<dlib::rgb_pixel> small = to_dlib(box_downsample(image, factor));
    const std::optional<dlib::rectangle> found = largest(scanner_->hog(small));
    if (!found) return std::nullopt;
    box = dlib::rectangle(found->left() * factor, found->top() * factor, (found->right() + 1) * factor - 1,
                          (found->bottom() + 1) * factor - 1);
  } else if (const std::optional<dlib::rectangle> found = largest(scanner_->hog(full))) {
    box = *found;
  } else if (longer <= kLargestUpsampledSide) {
    dlib::array2d<dlib::rgb_pixel> doubled;
    dlib::pyramid_up(full, doubled, dlib::pyramid_down<2>());
    const std::optional<dlib::rectangle> found_doubled = largest(scanner_->hog(doubled));
    if (!found_doubled) return std::nullopt;
    box = dlib::pyramid_down<2>().rect_down(*found_doubled);
  } else {
    return std::nullopt;
  }

  FaceDetection face;
  face.left = box.left() - 0.5;
  face.top = box.top() - 0.5;
  face.right = box.right() + 0.5;
  face.bottom = box.bottom() + 0.5;
  face.landmarks = five_points(model_->predictor(full, box));
  return face;
}

#else  // built without dlib

struct FaceDetector::Model {};
struct FaceDetector::Scanner {};

bool face_detection_available() { return false; }

FaceDetector::FaceDetector(const std::string&) {
  throw Error("face detection: cuface was built without dlib (install libdlib-dev libdlib-data and reconfigure)");
}
FaceDetector::FaceDetector(const FaceDetector& other) : model_(other.model_) {}
FaceDetector::~FaceDetector() = default;
std::optional<FaceDetection> FaceDetector::detect_largest(const Image&) { return std::nullopt; }

#endif

}  // namespace cuface
