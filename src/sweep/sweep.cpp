// Sweep files (sweep/sweep.h): read with toml++, every point's config through load_config
// (the one parser per key), the plan written through the file layer.
#include "r1dist/sweep/sweep.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/hash.h"
#include "r1dist/base/json.h"
#include "r1dist/formats/metrics.h"

namespace r1dist {

namespace {

std::string line_of(const std::string& file, const toml::node& n) {
  const auto l = n.source().begin.line;
  return l ? file + ":" + std::to_string(l) : file;
}

// A float in its shortest form that reads back to the same double.
std::string shortest(double v, bool scientific) {
  char b[64];
  for (int p = 0; p <= 17; ++p) {
    std::snprintf(b, sizeof b, scientific ? "%.*e" : "%.*g", p, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

std::string toml_string(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') { o += "\\n"; continue; }
    o += c;
  }
  return o + "\"";
}

// The TOML text of a value, as --set reads it. false when n is not a plain value or array.
bool toml_text(const toml::node& n, std::string* out) {
  if (auto s = n.as_string()) return *out = toml_string(s->get()), true;
  if (auto i = n.as_integer()) return *out = std::to_string(i->get()), true;
  if (auto b = n.as_boolean()) return *out = b->get() ? "true" : "false", true;
  if (auto f = n.as_floating_point()) {
    const double v = f->get();
    if (std::isnan(v)) return *out = "nan", true;
    if (std::isinf(v)) return *out = v > 0 ? "inf" : "-inf", true;
    std::string t = shortest(v, false);
    if (t.find_first_of(".eE") == std::string::npos) t += ".0";
    return *out = t, true;
  }
  if (auto a = n.as_array()) {
    std::string t = "[";
    for (size_t i = 0; i < a->size(); ++i) {
      std::string e;
      if (!toml_text(*a->get(i), &e)) return false;
      t += (i ? ", " : "") + e;
    }
    return *out = t + "]", true;
  }
  return false;
}

// The known config keys (config_key_docs), for the check of every key a sweep sets.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = [] {
    std::set<std::string> k;
    for (const auto& d : config_key_docs()) k.insert(d.key);
    return k;
  }();
  return keys;
}

std::string join(const std::vector<std::string>& lines, const char* sep) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : sep) + l;
  return out;
}

struct Problems {
  std::vector<std::string> list;
  void add(const std::string& where, const std::string& what) { list.push_back(where + ": " + what); }
};

bool check_key(const std::string& key, const std::string& where, Problems& p) {
  if (known_keys().count(key)) return true;
  const auto near = suggest_config_key(key);
  p.add(where, "unknown config key " + key + (near.empty() ? "" : " (did you mean " + near + "?)") +
                   "\nHINT: r1dist config --keys lists every key");
  return false;
}

// The leaves of a table as dotted keys (`train.lr = 1` and `[x.train] lr = 1` both give
// train.lr), in the order they appear in the file (toml++ keeps a table's keys sorted).
void flatten(const toml::table& t, const std::string& prefix, std::vector<std::pair<std::string, const toml::node*>>& out,
             const std::set<std::string>& reserved = {}) {
  for (const auto& [k, v] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (prefix.empty() && reserved.count(key)) continue;
    if (auto sub = v.as_table()) flatten(*sub, key, out);
    else out.emplace_back(key, &v);
  }
  if (!prefix.empty()) return;
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    const auto &x = a.second->source().begin, &y = b.second->source().begin;
    return x.line != y.line ? x.line < y.line : x.column < y.column;
  });
}

// A name that is a safe directory name.
bool safe_name(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 200) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '+';
  });
}

std::string last_component(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string dir_of(const std::string& p) {
  const auto s = p.find_last_of('/');
  return s == std::string::npos ? "" : p.substr(0, s + 1);
}

// A config path of the sweep file: relative to the file's directory unless absolute.
std::string beside(const std::string& sweep_file, const std::string& p) {
  return !p.empty() && p[0] == '/' ? p : dir_of(sweep_file) + p;
}

// Short names of the common axes in a point's name; other keys use their last component.
std::string key_label(const std::string& key) {
  static const std::map<std::string, std::string> labels = {
      {"train.lr", "lr"},          {"train.steps", "s"},        {"lora.r", "r"},
      {"lora.alpha", "a"},         {"lora.dropout", "do"},      {"train.seed", "seed"},
      {"data.max_seq_len", "len"}, {"train.grad_accum", "ga"},  {"train.micro_batch", "mb"},
      {"train.weight_decay", "wd"}, {"train.warmup_steps", "wu"}, {"data.n_samples", "n"}};
  if (key == "model.path") return "";
  const auto it = labels.find(key);
  return it != labels.end() ? it->second : key.substr(key.find_last_of('.') + 1);
}

// {key} placeholders of a name template replaced by the values' labels.
std::string expand_template(const std::string& tmpl, const std::vector<std::pair<std::string, std::string>>& values,
                            const std::string& where, Problems& p) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '{') {
      out += tmpl[i];
      continue;
    }
    const auto close = tmpl.find('}', i);
    if (close == std::string::npos) {
      p.add(where, "name template \"" + tmpl + "\": an unclosed {");
      return "";
    }
    const std::string key = tmpl.substr(i + 1, close - i - 1);
    const auto it = std::find_if(values.begin(), values.end(), [&](const auto& v) { return v.first == key; });
    if (it == values.end()) {
      p.add(where, "name template \"" + tmpl + "\": {" + key + "} is not a swept key of this point");
      return "";
    }
    out += sweep_value_label(key, it->second);
    i = close;
  }
  return out;
}

std::string default_name(const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out;
  for (const auto& [k, v] : values) out += (out.empty() ? "" : "-") + key_label(k) + sweep_value_label(k, v);
  return out;
}

std::string file_stem(const std::string& path) {
  std::string s = last_component(path);
  for (const char* ext : {".toml", ".sweep"})
    if (s.size() > std::strlen(ext) && s.compare(s.size() - std::strlen(ext), std::string::npos, ext) == 0)
      s.resize(s.size() - std::strlen(ext));
  return s;
}

}  // namespace

std::string sweep_value_label(const std::string& key, const std::string& toml_value) {
  std::string v = toml_value;
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (key == "model.path") {
    const std::string base = last_component(v);
    const auto dash = base.find_last_of('-');
    std::string s = dash == std::string::npos || dash + 1 == base.size() ? base : base.substr(dash + 1);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
  }
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (end && *end == '\0' && !v.empty() && v.find_first_of(".eE") != std::string::npos && std::isfinite(d)) {
    // Learning rates, small and large numbers in scientific form (lr 5e-06), others plain (0.05).
    const double a = std::fabs(d);
    return a != 0 && (key == "train.lr" || a < 1e-3 || a >= 1e6) ? shortest(d, true) : shortest(d, false);
  }
  std::string out;
  for (char c : v) out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ? c : '_';
  return out;
}

Sweep read_sweep(const std::string& path, const SweepOptions& opt) {
  std::string text, why;
  if (!try_read_file(path, &text, &why)) throw UsageError(path + ": cannot open sweep file (" + why + ")");
  toml::table doc;
  try {
    doc = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw UsageError(path + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
                     std::string(e.description()));
  }
  Problems p;
  Sweep sw;
  sw.file = path;
  for (const auto& [k, v] : doc) {
    const std::string s(k.str());
    if (s != "sweep" && s != "set" && s != "grid" && s != "point")
      p.add(line_of(path, v), "unknown section [" + s + "]: a sweep file has [sweep], [set], [grid] and [[point]]");
  }
  // [sweep]
  std::string base_config, name_template;
  if (auto sec = doc["sweep"].as_table()) {
    for (const auto& [k, v] : *sec) {
      const std::string key(k.str());
      if (key != "config" && key != "out" && key != "name") {
        p.add(line_of(path, v), "[sweep] " + key + ": unknown (the keys are config, out, name; config keys go in "
                                "[set], [grid] or [[point]])");
        continue;
      }
      if (!v.is_string()) {
        p.add(line_of(path, v), "[sweep] " + key + " must be a string");
        continue;
      }
      const std::string val = v.as_string()->get();
      if (key == "config") base_config = beside(path, val);
      if (key == "out") sw.out = val;
      if (key == "name") name_template = val;
    }
  } else if (doc.contains("sweep")) {
    p.add(path, "sweep must be a table ([sweep])");
  }
  if (!opt.out.empty()) sw.out = opt.out;
  if (sw.out.empty()) sw.out = "runs/" + file_stem(path);
  while (sw.out.size() > 1 && sw.out.back() == '/') sw.out.pop_back();

  // [set]
  std::vector<std::string> common;
  if (auto sec = doc["set"].as_table()) {
    std::vector<std::pair<std::string, const toml::node*>> leaves;
    flatten(*sec, "", leaves);
    for (const auto& [k, n] : leaves) {
      std::string t;
      if (!check_key(k, line_of(path, *n), p)) continue;
      if (!toml_text(*n, &t)) p.add(line_of(path, *n), "[set] " + k + ": not a value");
      else common.push_back(k + "=" + t);
    }
  }

  // The points before their configs: (where, config file, values, explicit name)
  struct Raw {
    std::string where, config, name;
    std::vector<std::pair<std::string, std::string>> values;
  };
  std::vector<Raw> raws;
  if (auto grid = doc["grid"].as_table()) {
    std::vector<std::pair<std::string, const toml::node*>> leaves;
    flatten(*grid, "", leaves);
    std::vector<std::vector<std::string>> axes;
    bool ok = true;
    for (const auto& [k, n] : leaves) {
      const auto where = line_of(path, *n);
      if (!check_key(k, where, p)) { ok = false; continue; }
      auto arr = n->as_array();
      if (!arr) {
        p.add(where, "[grid] " + k + ": an axis is a list of values (" + k + " = [a, b, ...]); a single value goes in [set]");
        ok = false;
        continue;
      }
      if (arr->empty()) {
        p.add(where, "[grid] " + k + ": an empty axis: the grid would have no points");
        ok = false;
        continue;
      }
      std::vector<std::string> vals;
      for (size_t i = 0; i < arr->size(); ++i) {
        std::string t;
        if (!toml_text(*arr->get(i), &t)) {
          p.add(where, "[grid] " + k + "[" + std::to_string(i) + "]: not a value");
          ok = false;
        }
        vals.push_back(t);
      }
      sw.axes.push_back(k);
      axes.push_back(vals);
    }
    if (ok && axes.empty()) p.add(line_of(path, *grid), "[grid] has no axes");
    // The product before the expansion: a grid of millions of points would exhaust memory
    // before any point could be named.
    double product = 1;
    std::string shape;
    for (size_t a = 0; a < axes.size(); ++a) {
      product *= double(axes[a].size());
      shape += (a ? " x " : "") + std::to_string(axes[a].size()) + " " + sw.axes[a];
    }
    if (ok && product > double(kMaxSweepPoints)) {
      char count[32];
      std::snprintf(count, sizeof count, "%.0f", product);
      p.add(line_of(path, *grid), "[grid] has " + std::string(count) + " points (" + shape + "), more than the " +
                                      std::to_string(kMaxSweepPoints) +
                                      " of a sweep\nHINT: fewer values per axis, or several sweep files");
      ok = false;
    }
    if (ok && !axes.empty()) {
      std::vector<size_t> idx(axes.size(), 0);
      const std::string where = line_of(path, *grid);
      for (;;) {
        Raw r;
        r.where = where;
        r.config = base_config;
        for (size_t a = 0; a < axes.size(); ++a) r.values.emplace_back(sw.axes[a], axes[a][idx[a]]);
        raws.push_back(std::move(r));
        size_t a = axes.size();
        while (a > 0 && ++idx[a - 1] == axes[a - 1].size()) idx[--a] = 0;
        if (a == 0) break;
      }
    }
  }
  if (auto pts = doc["point"].as_array()) {
    for (size_t i = 0; i < pts->size(); ++i) {
      const auto* t = pts->get(i)->as_table();
      const auto where = line_of(path, *pts->get(i));
      if (!t) {
        p.add(where, "[[point]] " + std::to_string(i + 1) + " is not a table");
        continue;
      }
      Raw r;
      r.where = where;
      r.config = base_config;
      if (auto n = t->get("name")) {
        if (n->is_string()) r.name = n->as_string()->get();
        else p.add(line_of(path, *n), "[[point]] name must be a string");
      }
      if (auto c = t->get("config")) {
        if (c->is_string()) r.config = beside(path, c->as_string()->get());
        else p.add(line_of(path, *c), "[[point]] config must be a string");
      }
      std::vector<std::pair<std::string, const toml::node*>> leaves;
      flatten(*t, "", leaves, {"name", "config"});
      for (const auto& [k, n] : leaves) {
        std::string txt;
        if (!check_key(k, line_of(path, *n), p)) continue;
        if (!toml_text(*n, &txt)) p.add(line_of(path, *n), "[[point]] " + k + ": not a value");
        else r.values.emplace_back(k, txt);
      }
      raws.push_back(std::move(r));
    }
  } else if (doc.contains("point")) {
    p.add(path, "point must be an array of tables ([[point]])");
  }
  if (raws.empty() && p.list.empty()) p.add(path, "no points: give a [grid] of axes or [[point]] tables");
  if (raws.size() > kMaxSweepPoints)
    p.add(path, std::to_string(raws.size()) + " points, more than the " + std::to_string(kMaxSweepPoints) +
                    " of a sweep\nHINT: several sweep files");
  if (!p.list.empty()) throw UsageError(join(p.list, "\n"));

  // Names, then every point's config.
  std::map<std::string, std::string> named;  // name -> where
  auto claim = [&](const std::string& name, const std::string& where) {
    if (!safe_name(name)) {
      p.add(where, "point name \"" + name + "\" is not a directory name (letters, digits, - _ . +)");
      return false;
    }
    const auto [it, fresh] = named.emplace(name, where);
    if (!fresh) p.add(where, "two points named \"" + name + "\" (the other at " + it->second + "): names must differ");
    return fresh;
  };
  auto resolve = [&](SweepPoint& pt) {
    if (pt.config_file.empty()) {
      p.add(pt.where, "no config to start from (set [sweep] config or the point's config)");
      return false;
    }
    pt.overrides = common;
    for (const auto& [k, v] : pt.values) pt.overrides.push_back(k + "=" + v);
    pt.overrides.push_back("output.dir=" + toml_string(sw.out + "/" + pt.name));
    for (const auto& s : opt.sets) {
      // --set applies to every point, but never silently over a point's own value: its name
      // and sweep.json would then tell another run than the one it trains.
      const std::string key = s.substr(0, s.find('='));
      const auto own = std::find_if(pt.values.begin(), pt.values.end(), [&](const auto& v) { return v.first == key; });
      if (!pt.derived && own != pt.values.end()) {
        p.add(pt.where, "--set " + s + " would override the point's own " + key + " = " + own->second +
                            "\nHINT: change the value in the sweep file, or leave the key out of its grid");
        return false;
      }
      pt.overrides.push_back(s);
    }
    if (pt.derived)  // a base evaluation stays one whatever --set says of train.*
      for (const auto& [k, v] : pt.values)
        if (k.rfind("train.", 0) == 0) pt.overrides.push_back(k + "=" + v);
    try {
      Config probe = load_config(pt.config_file, pt.overrides);
      const bool named_model = std::any_of(pt.overrides.begin(), pt.overrides.end(),
                                           [](const std::string& s) { return s.rfind("model.name=", 0) == 0; });
      if (!named_model) pt.overrides.push_back("model.name=" + toml_string(pt.name));
      if (!opt.models.empty())
        pt.overrides.push_back("model.path=" + toml_string(opt.models + "/" + last_component(probe.model.path)));
      if (!opt.data.empty()) pt.overrides.push_back("data.path=" + toml_string(opt.data));
      pt.cfg = load_config(pt.config_file, pt.overrides);
      pt.base = pt.cfg.train.steps == 0 && pt.cfg.train.epochs == 0;
      return true;
    } catch (const UsageError& e) {
      std::string msg = e.what();
      // One problem per line, each prefixed with the point.
      std::istringstream lines(msg);
      std::string l;
      std::string out;
      while (std::getline(lines, l)) out += (out.empty() ? "" : "\n  ") + l;
      p.add(pt.where, out);
      return false;
    }
  };
  std::vector<std::string> names;
  for (const auto& r : raws)
    names.push_back(!r.name.empty()          ? r.name
                    : !name_template.empty() ? expand_template(name_template, r.values, r.where, p)
                    : !r.values.empty()      ? default_name(r.values)
                                             : file_stem(r.config));
  // Labels are short, so different values can give one name (two models of one size, texts
  // that differ only in characters a directory name cannot hold): those made names get a
  // short hash of their values. Points of equal values keep theirs, refused below as twins.
  std::map<std::string, std::vector<size_t>> made;
  for (size_t i = 0; i < raws.size(); ++i)
    if (raws[i].name.empty() && !names[i].empty()) made[names[i]].push_back(i);
  for (const auto& [name, idx] : made) {
    if (idx.size() < 2) continue;
    for (size_t i : idx) {
      const bool twin = std::any_of(idx.begin(), idx.end(), [&](size_t j) {
        return j != i && raws[j].values == raws[i].values && raws[j].config == raws[i].config;
      });
      if (twin) continue;
      std::string all = raws[i].config;
      for (const auto& [k, v] : raws[i].values) all += "\x1f" + k + "=" + v;
      char h[16];
      std::snprintf(h, sizeof h, "-%06llx", static_cast<unsigned long long>(fnv1a64(all) & 0xffffff));
      names[i] += h;
    }
  }
  for (size_t i = 0; i < raws.size(); ++i) {
    const Raw& r = raws[i];
    SweepPoint pt;
    pt.where = r.where;
    pt.config_file = r.config;
    pt.values = r.values;
    pt.name = names[i];
    if (pt.name.empty()) continue;
    pt.where += " (point " + pt.name + ")";
    if (!claim(pt.name, r.where)) continue;
    if (resolve(pt)) sw.points.push_back(std::move(pt));
  }
  if (!p.list.empty()) throw UsageError(join(p.list, "\n"));

  // The base evaluations: one per model without one (a directory named with or without a
  // trailing '/' is one model).
  auto model_of = [](const SweepPoint& x) {
    std::string m = x.cfg.model.path;
    while (m.size() > 1 && m.back() == '/') m.pop_back();
    return std::filesystem::path(m).lexically_normal().string();
  };
  std::vector<std::string> models;
  std::set<std::string> evaluated;
  for (const auto& pt : sw.points) {
    if (pt.base) evaluated.insert(model_of(pt));
    if (std::find(models.begin(), models.end(), model_of(pt)) == models.end()) models.push_back(model_of(pt));
  }
  const size_t n_file = sw.points.size();
  for (const auto& m : models) {
    if (evaluated.count(m)) continue;
    const auto first = std::find_if(sw.points.begin(), sw.points.begin() + n_file,
                                    [&](const SweepPoint& x) { return model_of(x) == m; });
    SweepPoint b;
    b.derived = true;
    // base-14b; the whole directory name when two models share a size suffix.
    b.name = "base-" + sweep_value_label("model.path", m);
    if (named.count(b.name) || std::any_of(models.begin(), models.end(), [&](const std::string& o) {
          return o != m && sweep_value_label("model.path", o) == sweep_value_label("model.path", m);
        }))
      b.name = "base-" + sweep_value_label("", last_component(m));
    b.where = first->where + " (the base evaluation of " + m + ")";
    b.config_file = first->config_file;
    b.values = first->values;
    // Not the training settings, but train.seed: it chooses the held-out rows the base is measured on.
    b.values.erase(std::remove_if(b.values.begin(), b.values.end(),
                                  [](const auto& v) { return v.first.rfind("train.", 0) == 0 && v.first != "train.seed"; }),
                   b.values.end());
    b.values.emplace_back("train.steps", "0");
    if (first->cfg.train.epochs > 0) b.values.emplace_back("train.epochs", "0");
    if (std::any_of(first->values.begin(), first->values.end(), [](const auto& v) { return v.first == "model.name"; }))
      b.values.erase(std::remove_if(b.values.begin(), b.values.end(), [](const auto& v) { return v.first == "model.name"; }),
                     b.values.end());
    if (!claim(b.name, b.where)) continue;
    if (resolve(b)) sw.points.push_back(std::move(b));
  }
  // Every point in a directory of its own (an output.dir set for all would make them share one).
  std::map<std::string, std::string> dirs;  // normalised output.dir -> the point's name
  for (const auto& pt : sw.points) {
    const std::string dir = std::filesystem::path(pt.cfg.output.dir).lexically_normal().string();
    const auto [it, fresh] = dirs.emplace(dir, pt.name);
    if (!fresh)
      p.add(pt.where, "output.dir = \"" + pt.cfg.output.dir + "\" is also point " + it->second +
                          "'s: every point needs a directory of its own\nHINT: do not set output.dir for every "
                          "point; the plan puts each under OUT/NAME");
  }
  if (!p.list.empty()) throw UsageError(join(p.list, "\n"));
  return sw;
}

void write_sweep_plan(const Sweep& sw) {
  make_dirs(sw.out + "/configs");
  nlohmann::json manifest = {{"format", "r1dist-sweep"}, {"format_version", 1}, {"sweep_file", sw.file},
                             {"out", sw.out},            {"axes", sw.axes}};
  nlohmann::json points = nlohmann::json::array();
  std::string tsv = "# index\tkind\tname\tconfig\toutput_dir\n";
  int tuned = 0, base = 0;
  for (const auto& pt : sw.points) {
    const std::string cfg_path = sw.out + "/configs/" + pt.name + ".toml";
    std::string head = "# Point " + pt.name + " of the sweep " + sw.file + ": " + pt.config_file;
    for (const auto& o : pt.overrides) head += "\n#   --set " + o;
    write_file_atomic(cfg_path, head + "\n# (every key resolved: r1dist sweep plan wrote this file)\n\n" + pt.cfg.to_toml());
    const int index = pt.base ? base++ : tuned++;
    nlohmann::json values = nlohmann::json::object();
    for (const auto& [k, v] : pt.values) values[k] = v;
    points.push_back({{"index", index},
                      {"kind", pt.base ? "base" : "tuned"},
                      {"name", pt.name},
                      {"derived", pt.derived},
                      {"config", cfg_path},
                      {"output_dir", pt.cfg.output.dir},
                      {"model_path", pt.cfg.model.path},
                      {"steps", pt.cfg.train.steps},  // 0 with train.epochs: derived when the run starts
                      {"epochs", pt.cfg.train.epochs},
                      {"lr", pt.cfg.train.lr},
                      {"values", values}});
    tsv += std::to_string(index) + "\t" + (pt.base ? "base" : "tuned") + "\t" + pt.name + "\t" + cfg_path + "\t" +
           pt.cfg.output.dir + "\n";
  }
  manifest["points"] = points;
  manifest["tuned"] = tuned;
  manifest["base"] = base;
  write_file_atomic(sw.out + "/sweep.json", manifest.dump(1) + "\n");
  write_file_atomic(sw.out + "/points.tsv", tsv);
}

namespace {

// Whether a process holds the run lock of dir (base/run_lock.h): a non-blocking try.
bool lock_held(const std::string& dir) {
  const std::string path = dir + "/.r1dist.lock";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == '\t') out.push_back(cur), cur.clear();
    else cur += c;
  }
  out.push_back(cur);
  return out;
}

}  // namespace

std::vector<PointStatus> sweep_status(const std::string& out_dir) {
  const std::string manifest = out_dir + "/sweep.json";
  if (!is_file(manifest))
    throw UsageError(out_dir + " has no sweep.json: not a planned sweep\nHINT: r1dist sweep plan FILE --out " + out_dir);
  const Json doc = read_json_file(manifest);
  const JsonView root(doc, manifest);
  std::vector<PointStatus> out;
  for (const auto& pt : root["points"].elements()) {
    PointStatus s;
    s.name = pt["name"].string();
    s.kind = pt["kind"].string();
    s.output_dir = pt["output_dir"].string();
    const int64_t steps = pt["steps"].integer();
    // attempts.tsv (cluster/slurm/run_point.sh): start/end lines per attempt.
    std::string text;
    int last_start = 0, last_end = 0;
    std::vector<std::string> end_fields;
    if (try_read_file(s.output_dir + "/attempts.tsv", &text)) {
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        const auto f = split_tabs(line);
        if (f.size() >= 2 && f[0] == "start") last_start = std::atoi(f[1].c_str());
        if (f.size() >= 4 && f[0] == "end") last_end = std::atoi(f[1].c_str()), end_fields = f;
      }
    }
    s.attempts = last_start;
    int64_t step = -1;
    if (is_file(s.output_dir + "/metrics.h5")) {
      try {
        const auto m = read_metrics(s.output_dir + "/metrics.h5");
        if (!m.steps.empty()) step = m.steps.back().step;
      } catch (const std::exception&) {
      }
    }
    const std::string progress =
        step < 0 ? "" : "step " + std::to_string(step) + (steps > 0 ? " of " + std::to_string(steps) : "");
    const bool adapter = is_file(s.output_dir + "/adapter/adapter_model.safetensors");
    const bool has_run = is_file(s.output_dir + "/run.json") && is_file(s.output_dir + "/metrics.h5");
    if (lock_held(s.output_dir)) {
      s.state = "running";
      s.detail = progress.empty() ? "starting" : progress;
    } else if (last_start > last_end) {
      s.state = "interrupted";
      s.detail = "attempt " + std::to_string(last_start) + " did not end (killed without a signal, or its node failed)" +
                 (progress.empty() ? "" : "; " + progress);
    } else if (!end_fields.empty() && end_fields[3] != "0") {
      const std::string rc = end_fields[3];
      const std::string reason = end_fields.size() >= 7 ? end_fields[6] : "";
      s.state = rc == "75" ? "stopped" : "failed";
      s.detail = "exit " + rc + (rc == "75" ? ": stopped by a signal with a checkpoint; resumes with --resume auto" : "") +
                 (reason.empty() ? "" : ": " + reason) + (progress.empty() ? "" : "; " + progress);
    } else if (!end_fields.empty() || (s.kind == "tuned" ? adapter : has_run)) {
      s.state = "done";
      s.detail = s.kind == "tuned" ? (adapter ? "adapter in " + s.output_dir + "/adapter" : "ended with exit 0")
                                   : "evaluated";
    } else {
      s.state = "not started";
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace r1dist
