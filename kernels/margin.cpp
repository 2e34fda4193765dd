#include "kernels/margin.h"

namespace cuface {

MarginType parse_margin_type(const std::string& name) {
  if (name == "arcface") return MarginType::ArcFace;
  if (name == "cosface") return MarginType::CosFace;
  if (name == "combined") return MarginType::Combined;
  throw Error("--margin: unknown margin '" + name + "' (expected arcface, cosface or combined)");
}

const char* margin_type_name(MarginType type) {
  switch (type) {
    case MarginType::ArcFace: return "arcface";
    case MarginType::CosFace: return "cosface";
    case MarginType::Combined: return "combined";
  }
  return "unknown";
}

MarginParams default_margin_params(MarginType type) {
  MarginParams params;
  params.type = type;
  if (type == MarginType::CosFace) params.m = 0.35f;
  return params;
}

}  // namespace cuface
