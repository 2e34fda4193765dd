// Training recipes: named sets of settings laid over TrainConfig's defaults before a --config file
// and the command-line flags (which still win). `large` is the defaults themselves: the original
// project's and InsightFace's choices for MS1M-scale data (millions of images, ~100k identities).
// `small` is what measurement found best for thousands of images of hundreds to a few thousand
// people trained from scratch on one machine: docs/recipes.md has the table it was chosen from.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace cuface {

// The config.json keys and values a recipe sets ("large": none). Unknown names are an error naming --recipe.
nlohmann::json recipe_settings(const std::string& name);

// A paragraph for `cuface train --help`: each recipe, what it sets and when to use it.
std::string recipes_help();

}  // namespace cuface
