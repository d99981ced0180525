// The file layer (base/fs.h) and JSON reading (base/json.h): atomic writers under a kill or a
// full disk, and a JsonView error for every way a value can be wrong.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "support/temp.h"

namespace r1dist {
namespace {

using test::TempDir;
using test::ThrowsWith;

// Runs `body` in a child process; returns its wait status.
int in_child(const std::function<void()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(AtomicFile, AKillBetweenTheWriteAndTheRenameLeavesTheOldFile) {
  TempDir d;
  const std::string path = d / "state.json";
  write_file_atomic(path, "old");
  const int status = in_child([&] {
    ::setenv("R1DIST_FAULT_ATOMIC", "state.json", 1);
    write_file_atomic(path, std::string(1 << 20, 'n'));
  });
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(read_file(path + ".tmp").size(), size_t(1) << 20) << "the new content was durable, not yet named";
  write_file_atomic(path, "new");  // the next writer takes over the leftover temporary
  EXPECT_EQ(read_file(path), "new");
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST(AtomicFile, AFailedWriteLeavesTheOldFileAndNoTemporary) {
  TempDir d;
  const std::string path = d / "big.bin";
  write_file_atomic(path, "old");
  // A file-size limit fails the write (EFBIG) as a full disk would (ENOSPC): the same path.
  const int status = in_child([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim {64 << 10, 64 << 10};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    try {
      write_file_atomic(path, std::string(1 << 20, 'x'));
    } catch (const Error& e) {
      const std::string msg = e.what();
      ::_exit(msg.find(path) != std::string::npos && msg.find("File too large") != std::string::npos ? 0 : 3);
    }
    ::_exit(4);
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the error names the file and the reason";
  EXPECT_EQ(read_file(path), "old");
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST(AtomicFile, ReplaceDirKeepsTheOldDirectoryUntilTheNewOneIsWhole) {
  TempDir d;
  const std::string dir = d / "adapter";
  make_dirs(dir);
  write_file_atomic(dir + "/a", "old");
  make_dirs(d / "adapter.tmp");
  write_file_atomic(d / "adapter.tmp/a", "new");
  const int status = in_child([&] {
    ::setenv("R1DIST_FAULT_ATOMIC", "/adapter", 1);
    replace_dir(d / "adapter.tmp", dir);
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(read_file(dir + "/a"), "old");
  replace_dir(d / "adapter.tmp", dir);
  EXPECT_EQ(read_file(dir + "/a"), "new");
  EXPECT_FALSE(exists(d / "adapter.tmp"));
  EXPECT_FALSE(exists(d / "adapter.old"));
}

TEST(FileLayer, ReadingADirectoryOrAMissingFileNamesIt) {
  TempDir d;
  EXPECT_TRUE(ThrowsWith([&] { read_file(d.path); }, {d.path, "it is a directory, not a file"}));
  EXPECT_TRUE(ThrowsWith([&] { read_file(d / "nope"); }, {d / "nope", "No such file or directory"}));
  write_file_atomic(d / "x", "bytes");
  copy_file(d / "x", d / "y");
  EXPECT_EQ(read_file(d / "y"), "bytes");
  EXPECT_TRUE(ThrowsWith([&] { copy_file(d / "nope", d / "z"); }, {"cannot copy", d / "nope"}));
}

TEST(JsonView, EveryWrongValueNamesTheFileTheKeyAndBothTypes) {
  const Json doc = parse_json(R"({"a": 1, "b": "s", "c": [1, 2.5], "d": {"e": null}, "big": 18446744073709551615})",
                              "f.json");
  const JsonView j(doc, "f.json");
  EXPECT_EQ(j["a"].integer(), 1);
  EXPECT_EQ(j["c"][1].number(), 2.5);
  EXPECT_EQ(j["d"]["e"].integer_or(7), 7) << "null reads as absent for an optional value";
  EXPECT_TRUE(ThrowsWith([&] { j["b"].integer(); }, {"f.json: \"b\" is a JSON string (\"s\"), not an integer"}));
  EXPECT_TRUE(ThrowsWith([&] { j["c"][1].integer(); }, {"f.json: \"c[1]\" is a JSON number (2.5), not an integer"}));
  EXPECT_TRUE(ThrowsWith([&] { j["d"]["e"].string(); }, {"f.json: \"d.e\" is null, not a string"}));
  EXPECT_TRUE(ThrowsWith([&] { j["x"]["y"].boolean(); }, {"f.json: missing field \"x.y\""}));
  EXPECT_TRUE(ThrowsWith([&] { j["a"].elements(); }, {"\"a\" is a JSON number (1), not an array"}));
  EXPECT_TRUE(ThrowsWith([&] { j["big"].integer(); }, {"\"big\"", "too large for a 64-bit integer"}));
  EXPECT_TRUE(ThrowsWith([&] { parse_json("{\"a\": ", "g.json"); }, {"g.json: not valid JSON", "line 1"}));
  EXPECT_TRUE(ThrowsWith([&] { parse_json("[1e999999]", "h.json"); }, {"h.json: not valid JSON"}));
  // Collecting: every problem of a document at once.
  std::vector<std::string> problems;
  const auto c = j.collecting(&problems);
  EXPECT_EQ(c["b"].integer(), 0);
  EXPECT_EQ(c["x"].string(), "");
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0], "\"b\" is a JSON string (\"s\"), not an integer");
  EXPECT_EQ(problems[1], "missing field \"x\"");
}

}  // namespace
}  // namespace r1dist
