// The packer behind `cuface pack`: lists the input, numbers identities densely, decodes each image,
// aligns it (5 landmarks from a file or the face detector -> ArcFace template), crops the detected
// face, or centre-crops it to size x size, re-encodes it and writes records round-robin into the
// shards, then the sidecar PREFIX.json.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "face/image/detect.h"
#include "face/image/image.h"
#include "face/pack/sources.h"

namespace cuface {

struct PackOptions {
  std::string input;
  std::string format = "tree";  // tree | list | utkface | rec | legacy
  TreeLabel tree_label = TreeLabel::Identity;
  std::string out;              // PREFIX
  std::string landmarks;        // --align FILE; empty: centre crop (or --detect)
  bool detect = false;          // --detect: the largest face found by dlib, cropped as `crop` says
  std::string landmark_model = kDefaultLandmarkModel;
  FaceCropOptions crop;         // --detect-mode, --pad
  int size = 112;               // output side in pixels
  int min_per_class = 1;        // identities with fewer listed images are dropped
  int shards = 1;
  int jobs = 0;                 // decode/encode threads; 0 = all hardware threads
  Encoding encoding = Encoding::Jpeg;  // Jpeg (source JPEG/PNG bytes kept when no warp is needed) or Raw
  int quality = 90;             // JPEG quality of re-encoded images
  bool strict = false;          // the first unreadable image is an error instead of a skip
  std::string command;          // the command line, recorded in the sidecar
  // Called after each chunk with (images processed, images to process).
  std::function<void(int64_t, int64_t)> progress;
  // Called for each skipped image (or listing entry) with its path and the reason.
  std::function<void(const std::string& path, const std::string& reason)> on_skip;
};

struct PackSummary {
  int64_t listed = 0;            // items found in the input
  int64_t dropped = 0;           // items of identities below --min-per-class
  int64_t packed = 0;
  int64_t skipped = 0;           // unreadable, undecodable, without landmarks, or no face found
  int64_t classes = 0;
  double seconds = 0;
  std::vector<std::string> shard_files;
  std::string sidecar;
};

// Throws cuface::Error for bad options, an unreadable input, write failures and (with strict) the
// first bad image; on any error no shard or sidecar is left under its final name.
PackSummary pack_images(const PackOptions& options);

}  // namespace cuface
