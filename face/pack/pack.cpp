#include "face/pack/pack.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "engine/error.h"

namespace cuface {

namespace fs = std::filesystem;

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string sidecar_path(const std::string& prefix) { return prefix + ".json"; }

std::string shard_path(const std::string& prefix, int shard, int shards) {
  char suffix[48];
  std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d%s", shard, shards, kShardExtension);
  return prefix + suffix;
}

Pack::Pack(const std::string& name) : name_(name) {
  if (ends_with(name, kShardExtension)) {
    shards_.push_back(std::make_unique<Shard>(name));
    const Shard& shard = *shards_[0];
    // Every class of a pack has a record, and records go round-robin over the shards, so a pack of
    // N shards has at most N x (this shard's records + 1) classes: a larger identity is damage, and
    // must not make a reader allocate for it.
    const int64_t most_classes = int64_t(shard.shard_count()) * (shard.size() + 1);
    int32_t largest = -1;
    for (int64_t i = 0; i < shard.size(); ++i) {
      const int32_t identity = shard.record(i).labels.identity;
      if (identity >= most_classes)
        throw Error(name + " record " + std::to_string(i) + ": identity " + std::to_string(identity) +
                    " is impossible in shard " + std::to_string(shard.shard_index()) + " of " +
                    std::to_string(shard.shard_count()) + " with " + std::to_string(shard.size()) +
                    " records (at most " + std::to_string(most_classes) + " classes): the shard is damaged");
      largest = std::max(largest, identity);
    }
    classes_ = int64_t(largest) + 1;
  } else {
    const std::string sidecar = ends_with(name, ".json") ? name : sidecar_path(name);
    std::ifstream in(sidecar);
    if (!in)
      throw Error("cannot open pack '" + name + "': " + sidecar + " not found (expected a PREFIX written by " +
                  "`cuface pack --out PREFIX`, its .json, or a .cfpk shard)");
    try {
      metadata_ = nlohmann::json::parse(in);
      if (metadata_.value("format", "") != "cuface-pack") throw Error("not a cuface pack sidecar");
      const int version = metadata_.at("version").get<int>();
      if (version != int(kPackVersion))
        throw Error("pack format version " + std::to_string(version) + ", this cuface reads version " +
                    std::to_string(kPackVersion));
      classes_ = metadata_.at("classes").get<int64_t>();
      const fs::path folder = fs::path(sidecar).parent_path();
      for (const auto& entry : metadata_.at("shards")) {
        const std::string file = (folder / entry.at("file").get<std::string>()).string();
        shards_.push_back(std::make_unique<Shard>(file));
        if (shards_.back()->size() != entry.at("records").get<int64_t>())
          throw Error(file + " holds " + std::to_string(shards_.back()->size()) + " records, the sidecar says " +
                      std::to_string(entry.at("records").get<int64_t>()));
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(sidecar + ": malformed pack sidecar (" + e.what() + ")");
    } catch (const Error& e) {
      throw Error(sidecar + ": " + e.what());
    }
  }
  for (const auto& shard : shards_) {
    starts_.push_back(total_);
    total_ += shard->size();
  }
  // Every class has a record: a larger count is damage, and must not make a reader allocate for it.
  if (classes_ < 0 || classes_ > total_)
    throw Error(name + ": " + std::to_string(classes_) + " identity classes for " + std::to_string(total_) +
                " records; every class has at least one record (a pack made by a cuface that counted classes "
                "before skipping unreadable images can have empty ones: pack it again)");
}

std::pair<const Shard*, int64_t> Pack::locate(int64_t i) const {
  CUFACE_CHECK(i >= 0 && i < total_, "record " + std::to_string(i) + " out of range for pack " + name_ + " (" +
                                         std::to_string(total_) + " records)");
  const size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
  return {shards_[s].get(), i - starts_[s]};
}

RecordView Pack::record(int64_t i) const {
  auto [shard, local] = locate(i);
  RecordView r = shard->record(local);
  if (r.labels.identity >= classes_)
    throw Error(shard->path() + " record " + std::to_string(local) + ": identity " + std::to_string(r.labels.identity) +
                " is not one of the pack's " + std::to_string(classes_) + " classes");
  return r;
}

bool Pack::check(int64_t i, std::string& error) const {
  auto [shard, local] = locate(i);
  return shard->check(local, error);
}

std::string Pack::describe(int64_t i) const {
  auto [shard, local] = locate(i);
  return shard->describe(local);
}

PackSet::PackSet(const std::vector<std::string>& names) {
  CUFACE_CHECK(!names.empty(), "no packs given");
  for (const std::string& name : names) {
    packs_.push_back(std::make_unique<Pack>(name));
    starts_.push_back(total_);
    identity_offsets_.push_back(classes_);
    total_ += packs_.back()->size();
    classes_ += packs_.back()->classes();
    if (classes_ > std::numeric_limits<int32_t>::max())
      throw Error("--train-sets: more than 2^31 identity classes in all (" + name + " brings the total to " +
                  std::to_string(classes_) + ")");
  }
}

std::pair<size_t, int64_t> PackSet::locate(int64_t i) const {
  CUFACE_CHECK(i >= 0 && i < total_, "record " + std::to_string(i) + " out of range (" + std::to_string(total_) +
                                         " records)");
  const size_t p = size_t(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
  return {p, i - starts_[p]};
}

RecordView PackSet::record(int64_t i) const {
  auto [p, local] = locate(i);
  RecordView r = packs_[p]->record(local);
  if (r.labels.identity >= 0) r.labels.identity += int32_t(identity_offsets_[p]);
  return r;
}

bool PackSet::check(int64_t i, std::string& error) const {
  auto [p, local] = locate(i);
  return packs_[p]->check(local, error);
}

std::string PackSet::describe(int64_t i) const {
  auto [p, local] = locate(i);
  return packs_[p]->describe(local);
}

}  // namespace cuface
