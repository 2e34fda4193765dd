// Gender and age evaluation: where the true labels come from (a labelled folder tree, UTKFace file
// names, LFW's male/female name lists), the table of true and predicted classes, and the printed
// confusion matrices (by count and row-normalised, as the original project printed them).
#pragma once
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "face/eval/metrics.h"

namespace cuface::eval {

// UTKFace names its images AGE_GENDER_RACE_DATE.jpg.chip.jpg (gender 0 = male, 1 = female).
struct UtkFaceLabels {
  int age = 0, gender = 0, race = 0;
};
std::optional<UtkFaceLabels> parse_utkface_name(const std::string& file_name);

// LFW's male_names.txt / female_names.txt: image file name -> "male" or "female". A name in both
// lists is left out (LFW's lists contradict each other for a few images) and counted.
struct LfwGender {
  std::unordered_map<std::string, std::string> gender_of;
  int contradictory = 0;
};
LfwGender read_lfw_gender(const std::filesystem::path& male_names, const std::filesystem::path& female_names);

// True and predicted classes as indices into `names`.
struct ClassTable {
  std::vector<std::string> names;
  std::vector<int> truth, predicted;
  // Whether every class name is an integer: the classes are then ordered bins (e.g. age) and sorted
  // by value, so "within one bin" and the absolute error mean something.
  bool numeric = false;
};
// `names` fixes the class order; empty: the sorted union of the labels (by value when all are integers).
// A label outside a given `names` is an error.
ClassTable make_class_table(std::span<const std::string> truth, std::span<const std::string> predicted,
                            std::vector<std::string> names = {});

// The confusion matrix by count, then row-normalised in percent, columns aligned, rows = truth.
std::string format_confusion(const ConfusionMatrix& matrix, std::span<const std::string> names);
// CSV: header `true\predicted,<names...>`, one row of counts per true class.
std::string confusion_csv(const ConfusionMatrix& matrix, std::span<const std::string> names);

}  // namespace cuface::eval
