// 5-point face alignment: the least-squares similarity transform (rotation, uniform scale,
// translation) that carries a face's landmarks onto the ArcFace template, as InsightFace aligns
// MS1M/Glint360K (skimage's SimilarityTransform, i.e. Umeyama 1991 without reflection).
#pragma once
#include <array>

#include "face/image/warp.h"

namespace cuface {

// Landmark order: left eye, right eye, nose tip, left mouth corner, right mouth corner (as seen in
// the image), the order of the LFW landmark file and of InsightFace's detectors.
constexpr int kLandmarkCount = 5;
using Landmarks = std::array<Point, kLandmarkCount>;

// The standard ArcFace template for 112 x 112 crops, scaled by size / 112.
Landmarks arcface_template(int size);

// The similarity s R p + t minimising sum |s R from[i] + t - to[i]|^2 over rotations R (det +1),
// scales s > 0 and translations t. Writing points as complex numbers z (from) and w (to), centred on
// their means, the minimiser is the complex factor q = sum(conj(z) w) / sum(|z|^2) (q = s e^{i theta})
// and t = mean(w) - q mean(z): Umeyama's solution restricted to proper rotations, in closed form.
// Returns false when the `from` points coincide (no transform is defined).
bool estimate_similarity(const Point* from, const Point* to, int count, Affine& out);

// The dst -> src map of the aligned crop: inverse of the landmarks -> template similarity.
// Returns false when the landmarks are degenerate.
bool alignment_map(const Landmarks& landmarks, int size, Affine& dst_to_src);

}  // namespace cuface
