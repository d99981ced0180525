// A directory's manifest of its files' sizes and CRC-32s (r1dist_manifest.json), written
// beside an exported PEFT adapter so that a damaged or partly copied adapter is refused when
// it is read back (r1dist eval/generate/merge --adapter) or checked (r1dist checkpoint verify).
// Files not named in the manifest (a README added later) are not judged. Extra string fields
// (what the trainer records of the base: base_fingerprint, base_quant, base_dtype; and the
// run's step at the export: step) travel with it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace r1dist {

constexpr const char* kManifestFile = "r1dist_manifest.json";
using ManifestExtra = std::map<std::string, std::string>;

// Writes DIR/r1dist_manifest.json (atomically) for the named files of DIR.
void write_manifest(const std::string& dir, const std::vector<std::string>& files, const ManifestExtra& extra = {});
// The problems found: empty when every listed file has its recorded size and CRC-32, or
// when DIR has no manifest (*has_manifest tells which). A manifest that cannot be parsed
// is itself a problem. `extra` receives the extra fields.
std::vector<std::string> check_manifest(const std::string& dir, bool* has_manifest = nullptr,
                                        ManifestExtra* extra = nullptr);
// The run's step at which DIR's adapter was exported (the manifest's "step"), when DIR holds a
// complete export (a manifest, every file as it records); -1 otherwise or when not recorded.
int64_t adapter_exported_at(const std::string& dir);

}  // namespace r1dist
