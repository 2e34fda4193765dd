// The fused margin-softmax cross-entropy of a face-recognition head (ArcFace, CosFace, InsightFace's
// combined margin), written in place over the cosine logits.
//
// Input: cos [N, C], cos_ij = <x_i/|x_i|, W_j/|W_j|> (one GEMM of the normalised rows), labels y [N].
// For a labelled row i with target c = cos_iy:
//   z_ij = s * cos_ij for j != y,   z_iy = s * f(c)     (f: the margin function below)
//   loss_i = lse(z_i) - z_iy,       p_ij = softmax(z_i)_j
//   dL/dcos_ij = s * p_ij / L  (j != y),   dL/dcos_iy = s * (p_iy - 1) * f'(c) / L
// with L the number of labelled rows (the loss is their mean). Rows labelled -1 are ignored: zero
// loss, zero gradient, not counted. Accuracy uses the argmax of the unmodified cosines (lowest index
// on ties); row_stats (kernels/loss_stats.h) hold loss_i, correct_i and c.
//
// Margin functions, theta = acos(c) (c clamped to [-1, 1] first):
//   ArcFace   f = cos(theta + m)                       f' = sin(theta + m) / sin(theta)
//             where theta + m would pass pi (c <= cos(pi - m)) f stops being monotonic, so there
//             f = c - m sin(m), f' = 1 (InsightFace's fallback); with easy_margin the margin is
//             applied only where c > 0 and f = c elsewhere.
//   CosFace   f = c - m                                 f' = 1
//   Combined  f = cos(m1 theta + m2) - m3               f' = m1 sin(m1 theta + m2) / sin(theta)
//             (InsightFace: m1 = 1, m3 = 0 is ArcFace without fallback, m1 = 1, m2 = 0 is CosFace)
// f' has 1/sin(theta), infinite at c = +-1 exactly. Any fp32 c strictly inside (-1, 1) has
// sin(theta) >= 3.4e-4; we floor sin(theta) at 1e-4 so a saturated cosine gives a large finite
// gradient instead of inf/NaN.
//
// Defaults (the papers' and InsightFace's): ArcFace s = 64, m = 0.5; CosFace s = 64, m = 0.35
// (CosFace paper; InsightFace's arcface_torch configs use 0.4); Combined s = 64, m1 = 1, m2 = 0.3,
// m3 = 0.2 (InsightFace's combined-margin example).
#pragma once
#include <cmath>
#include <string>

#include "kernels/loss_stats.h"

namespace cuface {

enum class MarginType : uint8_t { ArcFace, CosFace, Combined };

struct MarginParams {
  MarginType type = MarginType::ArcFace;
  float s = 64.0f;          // scale of every logit
  float m = 0.5f;           // ArcFace angular margin, CosFace cosine margin
  float m1 = 1.0f;          // Combined: cos(m1 * theta + m2) - m3
  float m2 = 0.3f;
  float m3 = 0.2f;
  bool easy_margin = false; // ArcFace only: margin where c > 0, none elsewhere
};

// "arcface" | "cosface" | "combined"; throws with the accepted names otherwise.
MarginType parse_margin_type(const std::string& name);
const char* margin_type_name(MarginType type);
// The defaults above for `type` (m = 0.35 for CosFace).
MarginParams default_margin_params(MarginType type);

// f(c) and f'(c) for one target cosine: the one definition both backends use.
struct MarginTarget {
  float value;  // f(c), before the scale s
  float slope;  // df/dc
};

// cos(a theta + b) and its derivative in c = cos(theta); sin(theta) comes from (1 - c)(1 + c), which
// keeps its accuracy as c -> 1.
CUFACE_HOST_DEVICE inline MarginTarget angular_margin(float c, float a, float b) {
  const float theta = acosf(c);
  const float sin_theta = fmaxf(sqrtf(fmaxf((1.0f - c) * (1.0f + c), 0.0f)), 1e-4f);
  return MarginTarget{cosf(a * theta + b), a * sinf(a * theta + b) / sin_theta};
}

CUFACE_HOST_DEVICE inline MarginTarget margin_target(const MarginParams& p, float c) {
  c = c < -1.0f ? -1.0f : c > 1.0f ? 1.0f : c;  // clamped, but a NaN stays NaN (fminf/fmaxf would drop it)
  switch (p.type) {
    case MarginType::CosFace:
      return {c - p.m, 1.0f};
    case MarginType::Combined: {
      MarginTarget t = angular_margin(c, p.m1, p.m2);
      t.value -= p.m3;
      return t;
    }
    case MarginType::ArcFace:
    default:
      if (p.easy_margin ? c > 0.0f : c > -cosf(p.m)) return angular_margin(c, 1.0f, p.m);  // cos(pi - m) = -cos m
      return {p.easy_margin ? c : c - p.m * sinf(p.m), 1.0f};
  }
}

namespace cpu {
void margin_softmax_ce(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params, Tensor& row_stats);
}
namespace cuda {
void margin_softmax_ce(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params, Tensor& row_stats);
}

// cos [N, C] f32 in, dL/dcos out (in place); labels [N] i32; row_stats [N, 3] f32 out.
inline void margin_softmax_ce(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params,
                              Tensor& row_stats) {
  check_loss_outputs(cos, labels, row_stats, "margin_softmax_ce");
  CUFACE_CHECK(params.s > 0.0f, "margin_softmax_ce: scale s must be positive");
  CUFACE_DISPATCH(cos, cpu::margin_softmax_ce(ctx, cos, labels, params, row_stats),
                  cuda::margin_softmax_ce(ctx, cos, labels, params, row_stats));
}

}  // namespace cuface
