#include "face/train/recipe.h"

#include "engine/error.h"

namespace cuface {

namespace {

// docs/recipes.md: measured on a person-disjoint LFW split (about 5,000 images of 1,000 people).
nlohmann::json small_recipe() {
  return {{"arch", "resnet18"},   {"input_size", 64},     {"margin", "arcface"},  {"margin_s", 32.0},
          {"margin_m", 0.3},      {"margin_m_set", true}, {"batch", 64},          {"lr", 0.1},
          {"lr_schedule", "cosine"}, {"warmup", 200},     {"min_lr", 1e-3},       {"embedding_dropout", 0.4},
          {"scale_jitter", 0.1},  {"shift_jitter", 0.05}, {"colour_jitter", 0.2}};
}

}  // namespace

nlohmann::json recipe_settings(const std::string& name) {
  if (name == "small") return small_recipe();
  CUFACE_CHECK(name == "large" || name.empty(), "--recipe must be small or large, not '" + name + "'");
  return nlohmann::json::object();
}

std::string recipes_help() {
  const nlohmann::json small = small_recipe();
  std::string settings;
  for (const auto& [key, value] : small.items())
    if (key != "margin_m_set") settings += (settings.empty() ? "" : ", ") + key + " " + value.dump();
  return "Recipes (--recipe; flags and --config still override each setting): large = the defaults shown here, the "
         "original project's and InsightFace's for MS1M-scale data (millions of images, tens of thousands of "
         "identities, days of GPU time). small = for thousands of images of hundreds to a few thousand people "
         "trained from scratch on one machine, where the large recipe's ArcFace s 64 m 0.5 and constant LR "
         "generalise poorly (0.65 against 0.83 LFW accuracy on held-out people, same network and steps): " +
         settings +
         " (docs/recipes.md: how it was measured). Pack people with at least 2 images at the recipe's input size "
         "(cuface pack --size 64 --min-per-class 2). With --time-budget the schedule (warm-up, cosine decay) is laid over the "
         "wall-clock budget instead of a step count.";
}

}  // namespace cuface
