#include "r1dist/base/json.h"

#include <limits>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"

namespace r1dist {

namespace {

// "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." ->
// "parse error at line 1, column 5: syntax error ...".
std::string without_prefix(const std::string& what) {
  const auto close = what.find("] ");
  return what.rfind("[json.exception.", 0) == 0 && close != std::string::npos ? what.substr(close + 2) : what;
}

}  // namespace

Json parse_json(std::string_view text, const std::string& origin) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double.
    throw UsageError(origin + ": not valid JSON: " + without_prefix(e.what()));
  }
}

Json read_json_file(const std::string& path) {
  std::string text, why;
  if (!try_read_file(path, &text, &why)) throw UsageError("cannot open " + path + ": " + why);
  return parse_json(text, path);
}

std::string json_found(const Json& v) {
  if (v.is_null()) return "null";
  std::string shown;
  if (v.is_primitive()) {
    shown = v.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
  } else {
    shown = std::to_string(v.size()) + (v.is_object() ? " member" : " element") + (v.size() == 1 ? "" : "s");
  }
  return std::string("a JSON ") + v.type_name() + " (" + shown + ")";
}

JsonView::JsonView(const Json& root, std::string origin)
    : v_(&root), origin_(std::make_shared<const std::string>(std::move(origin))) {}

JsonView JsonView::operator[](std::string_view key) const {
  const std::string p = path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  const Json* child = nullptr;
  if (v_ && v_->is_object()) {
    auto it = v_->find(key);
    if (it != v_->end()) child = &*it;
  }
  return JsonView(child, origin_, p, sink_);
}

JsonView JsonView::operator[](size_t i) const {
  const std::string p = path_ + "[" + std::to_string(i) + "]";
  const Json* child = v_ && v_->is_array() && i < v_->size() ? &(*v_)[i] : nullptr;
  return JsonView(child, origin_, p, sink_);
}

const Json& JsonView::json() const {
  if (!v_) fail("is missing");
  return *v_;
}

std::string JsonView::where() const { return path_.empty() ? *origin_ : *origin_ + ": \"" + path_ + "\""; }

void JsonView::fail(const std::string& what) const { throw UsageError(where() + " " + what); }

void JsonView::problem(const std::string& what) const {
  if (!sink_) fail(what);
  sink_->push_back((path_.empty() ? std::string("the document") : "\"" + path_ + "\"") + " " + what);
}

bool JsonView::expect(bool ok, const char* wanted) const {
  if (ok) return true;
  if (!v_) {
    if (path_.empty()) {
      problem(std::string("is empty, not ") + wanted);
    } else if (sink_) {
      sink_->push_back("missing field \"" + path_ + "\"");
    } else {
      throw UsageError(*origin_ + ": missing field \"" + path_ + "\" (" + wanted + ")");
    }
    return false;
  }
  problem("is " + json_found(*v_) + ", not " + wanted);
  return false;
}

int64_t JsonView::integer() const {
  if (!expect(is_integer(), "an integer")) return 0;
  if (v_->is_number_unsigned() && v_->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
    problem("is " + v_->dump() + ", too large for a 64-bit integer");
    return 0;
  }
  return v_->get<int64_t>();
}

double JsonView::number() const {
  if (!expect(is_number(), "a number")) return 0;
  return v_->get<double>();
}

std::string JsonView::string() const {
  if (!expect(is_string(), "a string")) return {};
  return v_->get<std::string>();
}

bool JsonView::boolean() const {
  if (!expect(is_boolean(), "a boolean (true or false)")) return false;
  return v_->get<bool>();
}

std::optional<int64_t> JsonView::opt_integer() const {
  if (!present()) return std::nullopt;
  return integer();
}

std::optional<std::string> JsonView::opt_string() const {
  if (!present()) return std::nullopt;
  return string();
}

std::vector<std::pair<std::string, JsonView>> JsonView::items() const {
  std::vector<std::pair<std::string, JsonView>> out;
  if (!expect(is_object(), "an object")) return out;
  for (auto it = v_->begin(); it != v_->end(); ++it) {
    const std::string p = path_.empty() ? it.key() : path_ + "." + it.key();
    out.emplace_back(it.key(), JsonView(&it.value(), origin_, p, sink_));
  }
  return out;
}

std::vector<JsonView> JsonView::elements() const {
  std::vector<JsonView> out;
  if (!expect(is_array(), "an array")) return out;
  for (size_t i = 0; i < v_->size(); ++i)
    out.push_back(JsonView(&(*v_)[i], origin_, path_ + "[" + std::to_string(i) + "]", sink_));
  return out;
}

size_t JsonView::size() const { return v_ && (v_->is_object() || v_->is_array()) ? v_->size() : 0; }

JsonView JsonView::collecting(std::vector<std::string>* sink) const {
  JsonView v = *this;
  v.sink_ = sink;
  return v;
}

}  // namespace r1dist
