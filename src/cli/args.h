// The flags of one command, declared and read through a small facade over cxxopts. Only
// args.cpp includes cxxopts (a heavy header), so it is compiled once, not per command.
// Bad flags and values throw UsageError (exit code 2) with the program name.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace r1dist {

class Args {
 public:
  Args(const std::string& program, const std::string& description);
  ~Args();
  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;

  // Declaring. A default is shown in --help and read when the flag is absent.
  Args& flag(const std::string& name, const std::string& help);
  Args& option_str(const std::string& name, const std::string& help, std::optional<std::string> def = {});
  Args& option_int(const std::string& name, const std::string& help, std::optional<int64_t> def = {});
  Args& option_uint(const std::string& name, const std::string& help, std::optional<uint64_t> def = {});
  Args& option_real(const std::string& name, const std::string& help, std::optional<double> def = {});
  Args& option_list(const std::string& name, const std::string& help);  // repeatable
  // The options that bare arguments fill, in order, each with how the usage line and errors
  // show it: {{"path", "RUN_DIR|METRICS_H5"}} makes "r1dist metrics [OPTION...] RUN_DIR|METRICS_H5".
  // Declare them first; --help leaves them out of the option list (the usage line names them).
  struct Bare {
    std::string option, shown;
  };
  Args& positional(const std::vector<Bare>& bare);
  // What the usage line shows between the program and the bare arguments, for an option
  // every call needs: "--cfg FILE [OPTION...]" (default "[OPTION...]").
  Args& usage_options(const std::string& text);

  // Parses argv (argv[0] is the command name). Returns false when --help was given; the
  // help is then printed on rank 0.
  bool parse(int argc, char** argv);

  // Reading.
  bool has(const std::string& name) const;
  std::string str(const std::string& name) const;
  int64_t i64(const std::string& name) const;
  uint64_t u64(const std::string& name) const;
  double real(const std::string& name) const;
  std::vector<std::string> list(const std::string& name) const;  // empty when absent
  // str(name), or UsageError when absent: "--name is required", or for a bare argument
  // "missing SHOWN" with the usage line.
  std::string required(const std::string& name) const;
  // list(name), the same error when it is empty.
  std::vector<std::string> required_list(const std::string& name) const;
  // "PROGRAM [OPTION...] BARE...": the usage line of --help.
  std::string usage() const;
  const std::string& program() const { return program_; }

 private:
  struct Impl;
  [[noreturn]] void missing(const std::string& name) const;
  std::unique_ptr<Impl> impl_;
  std::string program_;
  std::vector<Bare> bare_;
  std::string usage_options_ = "[OPTION...]";
};

}  // namespace r1dist
