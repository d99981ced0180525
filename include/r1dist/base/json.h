// Reading JSON that users and other programs write (config.json, tokenizer.json,
// adapter_config.json, safetensors headers, data rows, run.json, manifests): every value is
// read through a JsonView, whose errors name the file, the key and what was expected and
// found, e.g.
//   runs/m/config.json: "use_sliding_window" is a JSON number (20), not a boolean
//   runs/m/config.json: missing "vocab_size"
// No nlohmann exception escapes a JsonView: a wrong type is a UsageError, never a
// json::type_error naming nothing.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace r1dist {

using Json = nlohmann::json;

// Parses `text`; UsageError "ORIGIN: not valid JSON: <reason>" (with line and column).
Json parse_json(std::string_view text, const std::string& origin);
// read_file (base/fs.h) + parse_json; a missing file is a UsageError "cannot open PATH: ...".
Json read_json_file(const std::string& path);

// "a JSON number (20)": the type and a short rendering of the value, for messages.
std::string json_found(const Json& v);

class JsonView {
 public:
  // The root of a document read from `origin` (a path, or "FILE:LINE" for a data row).
  JsonView(const Json& root, std::string origin);

  // Member `key` of an object, element `i` of an array. Absent (present() false) when this
  // is not an object/array or has no such member; reading an absent value names its path.
  JsonView operator[](std::string_view key) const;
  JsonView operator[](size_t i) const;

  bool present() const { return v_ && !v_->is_null(); }  // exists and is not null
  bool is_object() const { return v_ && v_->is_object(); }
  bool is_array() const { return v_ && v_->is_array(); }
  bool is_string() const { return v_ && v_->is_string(); }
  bool is_boolean() const { return v_ && v_->is_boolean(); }
  bool is_number() const { return v_ && v_->is_number(); }
  bool is_integer() const { return v_ && v_->is_number_integer(); }
  const Json& json() const;  // the value itself (must be present)

  // Typed values: UsageError when absent, null or of another type (or an integer out of range).
  int64_t integer() const;
  double number() const;  // any JSON number
  std::string string() const;
  bool boolean() const;
  // The fallback when absent or null; another type is still an error.
  int64_t integer_or(int64_t fallback) const { return present() ? integer() : fallback; }
  double number_or(double fallback) const { return present() ? number() : fallback; }
  std::string string_or(const std::string& fallback) const { return present() ? string() : fallback; }
  bool boolean_or(bool fallback) const { return present() ? boolean() : fallback; }
  std::optional<int64_t> opt_integer() const;
  std::optional<std::string> opt_string() const;

  // Containers (UsageError unless an object / an array): members in the document's key
  // order as nlohmann keeps it (sorted), elements in order.
  std::vector<std::pair<std::string, JsonView>> items() const;
  std::vector<JsonView> elements() const;
  size_t size() const;  // of an object or array; 0 when absent

  // UsageError "ORIGIN: "PATH" <what>" ("ORIGIN: <what>" at the root).
  [[noreturn]] void fail(const std::string& what) const;
  // Where this value is: "ORIGIN: "PATH"" (or "ORIGIN").
  std::string where() const;
  const std::string& path() const { return path_; }  // "rope_scaling.rope_type", "added_tokens[3]"

  // A view that records problems in `sink` instead of throwing: typed reads then return 0,
  // "" or false, so that a reader can list every problem of a file at once.
  JsonView collecting(std::vector<std::string>* sink) const;

 private:
  JsonView(const Json* v, std::shared_ptr<const std::string> origin, std::string path,
           std::vector<std::string>* sink)
      : v_(v), origin_(std::move(origin)), path_(std::move(path)), sink_(sink) {}
  void problem(const std::string& what) const;  // throws, or records in sink_
  bool expect(bool ok, const char* wanted) const;

  const Json* v_ = nullptr;
  std::shared_ptr<const std::string> origin_;
  std::string path_;
  std::vector<std::string>* sink_ = nullptr;
};

}  // namespace r1dist
