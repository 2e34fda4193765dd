// A pack: the shards written by one `cuface pack --out PREFIX` run, found through the sidecar
// PREFIX.json, and a PackSet: several packs read as one data set (`--train-sets A,B`).
//
// Identities in a PackSet: pack k's identities are shifted by the class counts of packs 0..k-1, so
// A's classes are 0..CA-1 and B's are CA..CA+CB-1: two packs never share an identity (the same
// person in both counts as two classes, as when the original concatenated lists). Unknown (-1)
// stays -1. Gender and age are not shifted.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "face/pack/shard.h"

namespace cuface {

// PREFIX -> "PREFIX.json"; the shard files are named "PREFIX-00000-of-00004.cfpk".
std::string sidecar_path(const std::string& prefix);
std::string shard_path(const std::string& prefix, int shard, int shards);

class Pack {
 public:
  // `name` is a PREFIX (with PREFIX.json beside it), the sidecar itself, or a single .cfpk shard.
  // Throws cuface::Error naming the missing or damaged file.
  explicit Pack(const std::string& name);

  int64_t size() const { return total_; }
  // Identity classes: from the sidecar; for a lone shard, 1 + the largest identity in it.
  int64_t classes() const { return classes_; }
  // The sidecar's contents (counts, histograms, command, time); empty for a lone shard.
  const nlohmann::json& metadata() const { return metadata_; }
  const std::string& name() const { return name_; }
  const std::vector<std::unique_ptr<Shard>>& shards() const { return shards_; }

  // Record i of the pack (shards in order). Same guarantees as Shard::record.
  RecordView record(int64_t i) const;
  bool check(int64_t i, std::string& error) const;
  std::string describe(int64_t i) const;

 private:
  std::pair<const Shard*, int64_t> locate(int64_t i) const;
  std::string name_;
  nlohmann::json metadata_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int64_t> starts_;  // first record of each shard
  int64_t total_ = 0;
  int64_t classes_ = 0;
};

class PackSet {
 public:
  explicit PackSet(const std::vector<std::string>& names);

  int64_t size() const { return total_; }
  int64_t classes() const { return classes_; }
  const std::vector<std::unique_ptr<Pack>>& packs() const { return packs_; }

  // Record i of the union, identity shifted as described above.
  RecordView record(int64_t i) const;
  bool check(int64_t i, std::string& error) const;
  std::string describe(int64_t i) const;

 private:
  std::pair<size_t, int64_t> locate(int64_t i) const;
  std::vector<std::unique_ptr<Pack>> packs_;
  std::vector<int64_t> starts_, identity_offsets_;
  int64_t total_ = 0;
  int64_t classes_ = 0;
};

}  // namespace cuface
