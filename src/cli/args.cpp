#include "cli/args.h"

// A repeatable option keeps each value whole: "--set eval.prompts=[\"a\",\"b\"]" must not be
// split at its commas (cxxopts splits vector values at this delimiter; none occurs in text).
#define CXXOPTS_VECTOR_DELIMITER '\x1f'
#include <cxxopts.hpp>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>

#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"

namespace r1dist {

namespace {

// Values are kept as text in cxxopts and converted here, so that a bad value is reported
// with the option's name ("--threads: 'many' is not an integer").
enum class Kind { text, integer, unsigned_integer, real };

template <class T>
std::optional<T> convert(const std::string& s) {
  T v{};
  const char* end = s.data() + s.size();
  if constexpr (std::is_floating_point_v<T>) {
    char* stop = nullptr;
    errno = 0;
    v = std::strtod(s.c_str(), &stop);
    if (s.empty() || stop != end || errno == ERANGE) return std::nullopt;
  } else {
    auto [ptr, ec] = std::from_chars(s.data(), end, v);
    if (s.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  }
  return v;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::integer: return "an integer";
    case Kind::unsigned_integer: return "a non-negative integer";
    case Kind::real: return "a number";
    default: return "text";
  }
}

}  // namespace

struct Args::Impl {
  cxxopts::Options options;
  cxxopts::ParseResult result;
  std::map<std::string, Kind> kinds;
  Impl(const std::string& program, const std::string& description) : options(program, description) {}

  void add(const std::string& name, const std::string& help, Kind kind, const std::optional<std::string>& def) {
    auto v = cxxopts::value<std::string>();
    if (def) v->default_value(*def);
    options.add_options()(name, help, v);
    kinds[name] = kind;
  }

  std::string text(const std::string& name) const { return result[name].as<std::string>(); }

  template <class T>
  T get(const std::string& name) const {
    const auto v = convert<T>(text(name));
    if (!v)
      throw UsageError(options.program() + ": --" + name + ": '" + text(name) + "' is not " +
                       kind_name(kinds.at(name)) + " (see --help)");
    return *v;
  }

  // Every given value converts (an unread option with a bad value is still an error).
  void check_values() const {
    for (const auto& [name, kind] : kinds) {
      if (!result.count(name)) continue;
      if (kind == Kind::integer) get<int64_t>(name);
      if (kind == Kind::unsigned_integer) get<uint64_t>(name);
      if (kind == Kind::real) get<double>(name);
    }
  }
};

Args::Args(const std::string& program, const std::string& description)
    : impl_(std::make_unique<Impl>(program, description)), program_(program) {
  impl_->options.add_options()("h,help", "show this help");
}

Args::~Args() = default;

Args& Args::flag(const std::string& name, const std::string& help) {
  impl_->options.add_options()(name, help);
  return *this;
}
Args& Args::option_str(const std::string& name, const std::string& help, std::optional<std::string> def) {
  impl_->add(name, help, Kind::text, def);
  return *this;
}
Args& Args::option_int(const std::string& name, const std::string& help, std::optional<int64_t> def) {
  impl_->add(name, help, Kind::integer, def ? std::optional<std::string>(std::to_string(*def)) : std::nullopt);
  return *this;
}
Args& Args::option_uint(const std::string& name, const std::string& help, std::optional<uint64_t> def) {
  impl_->add(name, help, Kind::unsigned_integer,
             def ? std::optional<std::string>(std::to_string(*def)) : std::nullopt);
  return *this;
}
Args& Args::option_real(const std::string& name, const std::string& help, std::optional<double> def) {
  std::optional<std::string> text;
  if (def) {
    std::ostringstream os;
    os << *def;
    text = os.str();
  }
  impl_->add(name, help, Kind::real, text);
  return *this;
}
Args& Args::option_list(const std::string& name, const std::string& help) {
  impl_->options.add_options()(name, help, cxxopts::value<std::vector<std::string>>());
  return *this;
}
Args& Args::positional(const std::vector<Bare>& bare) {
  std::vector<std::string> names;
  std::string shown;
  for (const auto& b : bare) {
    names.push_back(b.option);
    shown += (shown.empty() ? "" : " ") + b.shown;
  }
  impl_->options.parse_positional(names);
  impl_->options.positional_help(shown);
  bare_ = bare;
  return *this;
}

Args& Args::usage_options(const std::string& text) {
  impl_->options.custom_help(text);
  usage_options_ = text;
  return *this;
}

std::string Args::usage() const {
  std::string out = program_ + " " + usage_options_;
  for (const auto& b : bare_) out += " " + b.shown;
  return out;
}

// A missing bare argument: it and every one after it ("missing A B", "missing verify PATH...").
void Args::missing(const std::string& name) const {
  for (size_t i = 0; i < bare_.size(); ++i) {
    if (bare_[i].option != name) continue;
    std::string shown;
    for (size_t j = i; j < bare_.size(); ++j) shown += (j > i ? " " : "") + bare_[j].shown;
    throw UsageError(program_ + ": missing " + shown + " (usage: " + usage() + "; see --help)");
  }
  throw UsageError(program_ + ": --" + name + " is required (see --help)");
}

bool Args::parse(int argc, char** argv) {
  try {
    impl_->result = impl_->options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError(program_ + ": " + e.what() + " (see --help)");
  }
  if (impl_->result.count("help")) {
    if (dist_group().rank == 0) std::cout << impl_->options.help() << "\n";
    return false;
  }
  if (!impl_->result.unmatched().empty())
    throw UsageError(program_ + ": unexpected argument '" + impl_->result.unmatched().front() + "'");
  impl_->check_values();
  return true;
}

bool Args::has(const std::string& name) const { return impl_->result.count(name) > 0; }
std::string Args::str(const std::string& name) const { return impl_->text(name); }
int64_t Args::i64(const std::string& name) const { return impl_->get<int64_t>(name); }
uint64_t Args::u64(const std::string& name) const { return impl_->get<uint64_t>(name); }
double Args::real(const std::string& name) const { return impl_->get<double>(name); }
std::vector<std::string> Args::list(const std::string& name) const {
  return has(name) ? impl_->result[name].as<std::vector<std::string>>() : std::vector<std::string>{};
}
std::string Args::required(const std::string& name) const {
  if (!has(name)) missing(name);
  return str(name);
}
std::vector<std::string> Args::required_list(const std::string& name) const {
  auto v = list(name);
  if (v.empty()) missing(name);
  return v;
}

}  // namespace r1dist
