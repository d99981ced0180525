// Small helpers shared by the subcommands in src/cli/.
#pragma once
#include <cxxopts.hpp>

#include <iostream>
#include <string>

#include "r1dist/dist.h"
#include "r1dist/error.h"

namespace r1dist {

// Parses argv; prints help (rank 0) and returns false when --help was given.
inline bool parse_or_help(cxxopts::Options& o, int argc, char** argv, cxxopts::ParseResult& out) {
  o.add_options()("h,help", "show this help");
  out = o.parse(argc, argv);
  if (out.count("help")) {
    if (dist_group().rank == 0) std::cout << o.help() << "\n";
    return false;
  }
  if (!out.unmatched().empty())
    throw UsageError(o.program() + ": unexpected argument '" + out.unmatched().front() + "'");
  return true;
}

inline std::string required(const cxxopts::ParseResult& r, const cxxopts::Options& o,
                            const std::string& key) {
  if (!r.count(key)) throw UsageError(o.program() + ": --" + key + " is required (see --help)");
  return r[key].as<std::string>();
}

}  // namespace r1dist
