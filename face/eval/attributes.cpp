#include "face/eval/attributes.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "engine/error.h"

namespace cuface::eval {

namespace {

std::optional<long long> as_integer(const std::string& s) {
  long long v = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (s.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

std::vector<std::string> read_names(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot open " + file.string());
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

std::string pad_left(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}
std::string pad_right(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

}  // namespace

std::optional<UtkFaceLabels> parse_utkface_name(const std::string& file_name) {
  // The first three '_'-separated fields; the date and extension after them are not needed.
  std::vector<std::string> fields;
  size_t begin = 0;
  for (int k = 0; k < 3; ++k) {
    const size_t end = file_name.find('_', begin);
    if (end == std::string::npos) return std::nullopt;
    fields.push_back(file_name.substr(begin, end - begin));
    begin = end + 1;
  }
  const auto age = as_integer(fields[0]), gender = as_integer(fields[1]), race = as_integer(fields[2]);
  if (!age || !gender || !race || *age < 0 || *age > 150 || (*gender != 0 && *gender != 1) || *race < 0 || *race > 4)
    return std::nullopt;
  return UtkFaceLabels{int(*age), int(*gender), int(*race)};
}

LfwGender read_lfw_gender(const std::filesystem::path& male_names, const std::filesystem::path& female_names) {
  LfwGender out;
  for (const std::string& name : read_names(male_names)) out.gender_of[name] = "male";
  std::set<std::string> both;
  for (const std::string& name : read_names(female_names)) {
    auto it = out.gender_of.find(name);
    if (it != out.gender_of.end() && it->second == "male") both.insert(name);
    else out.gender_of[name] = "female";
  }
  for (const std::string& name : both) out.gender_of.erase(name);
  out.contradictory = int(both.size());
  return out;
}

ClassTable make_class_table(std::span<const std::string> truth, std::span<const std::string> predicted,
                            std::vector<std::string> names) {
  CUFACE_CHECK(truth.size() == predicted.size(), "make_class_table: one prediction per true label");
  ClassTable table;
  const bool given = !names.empty();
  if (!given) {
    std::set<std::string> all(truth.begin(), truth.end());
    all.insert(predicted.begin(), predicted.end());
    names.assign(all.begin(), all.end());
  }
  table.numeric = !names.empty() && std::all_of(names.begin(), names.end(), [](const std::string& n) { return as_integer(n).has_value(); });
  if (table.numeric && !given)
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) { return *as_integer(a) < *as_integer(b); });
  table.names = names;

  std::unordered_map<std::string, int> index;
  for (size_t i = 0; i < names.size(); ++i) index.emplace(names[i], int(i));
  auto lookup = [&](const std::string& label, const char* what) {
    auto it = index.find(label);
    if (it == index.end()) throw Error(std::string(what) + " label '" + label + "' is not one of the classes given");
    return it->second;
  };
  for (size_t i = 0; i < truth.size(); ++i) {
    table.truth.push_back(lookup(truth[i], "true"));
    table.predicted.push_back(lookup(predicted[i], "predicted"));
  }
  return table;
}

std::string format_confusion(const ConfusionMatrix& m, std::span<const std::string> names) {
  CUFACE_CHECK(names.size() == size_t(m.classes), "format_confusion: one name per class");
  size_t label_width = std::string("true \\ predicted").size();
  size_t width = 7;  // fits "100.0%" and a 6-digit count with a space
  for (const std::string& n : names) label_width = std::max(label_width, n.size()), width = std::max(width, n.size() + 1);
  for (int64_t c : m.counts) width = std::max(width, std::to_string(c).size() + 1);

  auto header = [&](const std::string& title) {
    std::string s = title + "\n" + pad_right("true \\ predicted", label_width);
    for (const std::string& n : names) s += pad_left(n, width);
    return s + pad_left("total", width + 1) + "\n";
  };
  std::string s = header("confusion matrix (count)");
  for (int t = 0; t < m.classes; ++t) {
    s += pad_right(names[size_t(t)], label_width);
    for (int p = 0; p < m.classes; ++p) s += pad_left(std::to_string(m.at(t, p)), width);
    s += pad_left(std::to_string(m.row_total(t)), width + 1) + "\n";
  }
  s += '\n';  // appended apart: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string
  s += header("confusion matrix (row-normalised)");
  for (int t = 0; t < m.classes; ++t) {
    s += pad_right(names[size_t(t)], label_width);
    for (int p = 0; p < m.classes; ++p) {
      const double r = m.rate(t, p);
      char cell[32];
      std::snprintf(cell, sizeof cell, "%.1f%%", 100 * r);
      s += pad_left(std::isnan(r) ? "-" : cell, width);
    }
    s += pad_left(std::to_string(m.row_total(t)), width + 1) + "\n";
  }
  return s;
}

std::string confusion_csv(const ConfusionMatrix& m, std::span<const std::string> names) {
  CUFACE_CHECK(names.size() == size_t(m.classes), "confusion_csv: one name per class");
  auto quoted = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  std::string s = "true\\predicted";
  for (const std::string& n : names) {
    s += ',';
    s += quoted(n);
  }
  s += "\n";
  for (int t = 0; t < m.classes; ++t) {
    s += quoted(names[size_t(t)]);
    for (int p = 0; p < m.classes; ++p) {
      s += ',';
      s += std::to_string(m.at(t, p));
    }
    s += "\n";
  }
  return s;
}

}  // namespace cuface::eval
