#include "r1dist/formats/manifest.h"

#include <cstdlib>

#include "r1dist/base/checksum.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"

namespace r1dist {

void write_manifest(const std::string& dir, const std::vector<std::string>& files, const ManifestExtra& extra) {
  Json j = {{"format", "r1dist-manifest"}, {"version", 1}, {"files", Json::object()}};
  for (const auto& [k, v] : extra) j[k] = v;
  for (const auto& name : files) {
    uint32_t crc = 0;
    uint64_t size = 0;
    std::string why;
    if (!file_crc32(dir + "/" + name, &crc, &size, &why))
      throw Error("writing the manifest of " + dir + ": cannot read " + name + ": " + why);
    j["files"][name] = {{"size", size}, {"crc32", crc32_hex(crc)}};
  }
  write_file_atomic(dir + "/" + kManifestFile, j.dump(2) + "\n");
}

std::vector<std::string> check_manifest(const std::string& dir, bool* has_manifest, ManifestExtra* extra) {
  const std::string path = dir + "/" + kManifestFile;
  std::string text;
  const bool has = try_read_file(path, &text);
  if (has_manifest) *has_manifest = has;
  if (!has) return {};
  std::vector<std::string> problems;
  try {
    const Json doc = parse_json(text, path);
    const JsonView j(doc, path);
    if (j["format"].string_or("") != "r1dist-manifest" || !j["files"].is_object())
      return {path + ": not an r1dist manifest"};
    for (const auto& [key, v] : j.items())
      if (extra && v.is_string()) (*extra)[key] = v.string();
    for (const auto& [name, rec] : j["files"].items()) {
      const int64_t size = rec["size"].integer();
      const std::string want = rec["crc32"].string();
      uint32_t crc = 0;
      uint64_t got_size = 0;
      std::string why;
      if (!file_crc32(dir + "/" + name, &crc, &got_size, &why)) {
        problems.push_back(dir + "/" + name + ": listed in " + kManifestFile + " but cannot be read (" + why + ")");
      } else if (int64_t(got_size) != size) {
        problems.push_back(dir + "/" + name + ": " + std::to_string(got_size) + " bytes, the manifest records " +
                           std::to_string(size) + " (truncated or replaced?)");
      } else if (crc32_hex(crc) != want) {
        problems.push_back(dir + "/" + name + " is damaged: CRC-32 " + crc32_hex(crc) + ", the manifest records " +
                           want);
      }
    }
  } catch (const Error& e) {
    problems.push_back(std::string("cannot be read as a manifest: ") + e.what());
  }
  return problems;
}

int64_t adapter_exported_at(const std::string& dir) {
  bool has_manifest = false;
  ManifestExtra extra;
  if (!is_dir(dir) || !check_manifest(dir, &has_manifest, &extra).empty() || !has_manifest) return -1;
  const auto it = extra.find("step");
  if (it == extra.end()) return -1;  // an export that did not record its step: made again
  char* end = nullptr;
  const long long step = std::strtoll(it->second.c_str(), &end, 10);
  return end && *end == 0 && !it->second.empty() ? int64_t(step) : -1;
}

}  // namespace r1dist
