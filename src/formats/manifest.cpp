#include "r1dist/formats/manifest.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "r1dist/base/checksum.h"
#include "r1dist/base/error.h"

namespace r1dist {

void write_manifest(const std::string& dir, const std::vector<std::string>& files) {
  nlohmann::json j = {{"format", "r1dist-manifest"}, {"version", 1}, {"files", nlohmann::json::object()}};
  for (const auto& name : files) {
    uint32_t crc = 0;
    uint64_t size = 0;
    std::string why;
    if (!file_crc32(dir + "/" + name, &crc, &size, &why))
      throw Error("writing the manifest of " + dir + ": cannot read " + name + ": " + why);
    j["files"][name] = {{"size", size}, {"crc32", crc32_hex(crc)}};
  }
  const std::string path = dir + "/" + kManifestFile, tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump(2) << "\n";
    if (!f.flush()) throw Error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot rename " + tmp + " to " + path);
}

std::vector<std::string> check_manifest(const std::string& dir, bool* has_manifest) {
  const std::string path = dir + "/" + kManifestFile;
  std::ifstream in(path);
  if (has_manifest) *has_manifest = static_cast<bool>(in);
  if (!in) return {};
  std::vector<std::string> problems;
  nlohmann::json j;
  try {
    std::stringstream ss;
    ss << in.rdbuf();
    j = nlohmann::json::parse(ss.str());
    if (j.value("format", "") != "r1dist-manifest" || !j.contains("files") || !j["files"].is_object())
      return {path + ": not an r1dist manifest"};
    for (const auto& [name, rec] : j["files"].items()) {
      const uint64_t size = rec.at("size").get<uint64_t>();
      const std::string want = rec.at("crc32").get<std::string>();
      uint32_t crc = 0;
      uint64_t got_size = 0;
      std::string why;
      if (!file_crc32(dir + "/" + name, &crc, &got_size, &why)) {
        problems.push_back(dir + "/" + name + ": listed in " + kManifestFile + " but cannot be read (" + why + ")");
      } else if (got_size != size) {
        problems.push_back(dir + "/" + name + ": " + std::to_string(got_size) + " bytes, the manifest records " +
                           std::to_string(size) + " (truncated or replaced?)");
      } else if (crc32_hex(crc) != want) {
        problems.push_back(dir + "/" + name + " is damaged: CRC-32 " + crc32_hex(crc) + ", the manifest records " +
                           want);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    problems.push_back(path + ": cannot be read as a manifest (" + e.what() + ")");
  }
  return problems;
}

}  // namespace r1dist
