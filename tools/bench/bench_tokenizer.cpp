// Tokenizer benchmark (not a test): single-thread encode throughput of r1dist and of the
// JavaScript reference (@lenml/tokenizers, run with node in the same invocation) on the
// parity corpus, batch throughput on several threads, and long single-line inputs run in a
// child process each, with limits on time and peak memory (exit 1 when one is exceeded).
//
//   r1dist_bench_tokenizer --tokenizer DIR --corpus CORPUS.jsonl [--repeat 3] [--threads 2]
//                          [--js tools/js/reference.mjs | --no-js] [--long-mb 10]
//                          [--max-seconds 20] [--max-bytes-per-byte 64]
// The corpus comes from tools/js/make_corpus.mjs (one JSON string per line).
#include <malloc.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "r1dist/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Peak resident set size of this process so far, in bytes (VmHWM).
size_t peak_rss() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

// Resets VmHWM to the current RSS, so that the next peak is the encoder's alone.
void reset_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

struct Args {
  std::string tokenizer, corpus, js, self;
  int repeat = 3, threads = 2;
  double long_mb = 10, max_seconds = 20, max_bytes_per_byte = 64;
  bool no_js = false;
  std::string child_kind;
};

std::string make_long(const std::string& kind, size_t bytes) {
  std::string unit;
  if (kind == "text") unit = " The patient's blood pressure is 120/80 mmHg; 头晕目眩, 恶心。";
  else if (kind == "letters") unit = "a";
  else if (kind == "cjk") unit = "头晕目眩恶心程序员常年熬夜";
  else if (kind == "digits") unit = "0123456789";
  else if (kind == "spaces") unit = " ";
  else if (kind == "punct") unit = "!?-=*#";
  else if (kind == "invalid") unit = "\xff";
  else throw std::runtime_error("unknown long-line kind " + kind);
  std::string s;
  s.reserve(bytes + unit.size());
  while (s.size() < bytes) s += unit;
  return s;
}

const std::vector<std::string> kLongKinds = {"text", "letters", "cjk", "digits", "spaces", "punct", "invalid"};

// Child: encode one long line, print {"seconds", "tokens", "peak_extra_bytes"}.
int child(const Args& a) {
  const auto tok = r1dist::Tokenizer::load(a.tokenizer);
  const size_t bytes = size_t(a.long_mb * 1e6);
  const std::string text = make_long(a.child_kind, bytes);
  tok.encode("warm up the scratch state");
  malloc_trim(0);  // hand loading's freed memory back, so the encoder cannot reuse it unseen
  reset_peak();
  const size_t base = peak_rss();
  const auto t0 = Clock::now();
  const auto ids = tok.encode(text);
  const double s = since(t0);
  const size_t peak = peak_rss();
  std::cout << json{{"seconds", s}, {"tokens", ids.size()}, {"peak_extra_bytes", peak > base ? peak - base : 0}}.dump()
            << std::endl;
  return 0;
}

json run_child(const Args& a, const std::string& kind) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    const std::string mb = std::to_string(a.long_mb);
    execl(a.self.c_str(), a.self.c_str(), "--tokenizer", a.tokenizer.c_str(), "--child-long", kind.c_str(),
          "--long-mb", mb.c_str(), (char*)nullptr);
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return json{{"error", "child failed: " + out}};
  auto j = json::parse(out);
  j["max_rss_bytes"] = size_t(ru.ru_maxrss) * 1024;
  return j;
}

std::vector<std::string> read_corpus(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open corpus " + path);
  std::vector<std::string> texts;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) texts.push_back(json::parse(line).get<std::string>());
  return texts;
}

}  // namespace

int main(int argc, char** argv) try {
  Args a;
  a.self = "/proc/self/exe";
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) a.self.assign(self, size_t(n));
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(k + " needs a value");
      return argv[++i];
    };
    if (k == "--tokenizer") a.tokenizer = val();
    else if (k == "--corpus") a.corpus = val();
    else if (k == "--js") a.js = val();
    else if (k == "--no-js") a.no_js = true;
    else if (k == "--repeat") a.repeat = std::stoi(val());
    else if (k == "--threads") a.threads = std::stoi(val());
    else if (k == "--long-mb") a.long_mb = std::stod(val());
    else if (k == "--max-seconds") a.max_seconds = std::stod(val());
    else if (k == "--max-bytes-per-byte") a.max_bytes_per_byte = std::stod(val());
    else if (k == "--child-long") a.child_kind = val();
    else {
      std::cerr << "usage: see the header of tools/bench/bench_tokenizer.cpp\n";
      return 2;
    }
  }
  if (a.tokenizer.empty()) throw std::runtime_error("--tokenizer is required");
  if (!a.child_kind.empty()) return child(a);
  if (a.corpus.empty()) throw std::runtime_error("--corpus is required (node tools/js/make_corpus.mjs writes one)");
  if (a.js.empty() && !a.no_js) throw std::runtime_error("give --js PATH/TO/reference.mjs or --no-js");

  auto t0 = Clock::now();
  auto tok = r1dist::Tokenizer::load(a.tokenizer);
  const double load_s = since(t0);
  const auto texts = read_corpus(a.corpus);
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  const double mb = double(bytes) / 1e6;
  std::printf("corpus: %zu texts, %.3f MB; tokenizer %s loaded in %.2f s\n", texts.size(), mb, a.tokenizer.c_str(), load_s);

  // Single thread: the first pass starts with an empty pre-token cache.
  std::vector<double> single;
  size_t tokens = 0;
  for (int r = 0; r < a.repeat; ++r) {
    t0 = Clock::now();
    tokens = 0;
    for (const auto& t : texts) tokens += tok.encode(t).size();
    single.push_back(since(t0));
  }
  double best = *std::min_element(single.begin(), single.end());
  std::printf("r1dist single thread: first pass %.1f MB/s, best of %d %.1f MB/s (%zu tokens)\n", mb / single[0],
              a.repeat, mb / best, tokens);

  // Several threads, a fresh tokenizer (cold caches) then warm.
  auto fresh = r1dist::Tokenizer::load(a.tokenizer);
  t0 = Clock::now();
  fresh.encode_batch(texts, a.threads);
  const double batch_cold = since(t0);
  t0 = Clock::now();
  fresh.encode_batch(texts, a.threads);
  const double batch_warm = since(t0);
  std::printf("r1dist encode_batch, %d threads: first %.1f MB/s, second %.1f MB/s\n", a.threads, mb / batch_cold,
              mb / batch_warm);

  bool ok = true;
  if (!a.no_js) {
    const std::string cmd = "node " + a.js + " bench --tokenizer " + a.tokenizer + " --in " + a.corpus +
                            " --repeat " + std::to_string(a.repeat);
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    for (size_t k; p && (k = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, k);
    if (!p || pclose(p) != 0) throw std::runtime_error("the JS reference failed: " + cmd);
    const auto js = json::parse(out);
    const double js_first = js["mb_per_s_first"], js_best = js["mb_per_s_best"];
    std::printf("@lenml/tokenizers (node %s) single thread: first pass %.2f MB/s, best of %d %.2f MB/s (%zu tokens)\n",
                js["node"].get<std::string>().c_str(), js_first, a.repeat, js_best, js["tokens"].get<size_t>());
    std::printf("ratio r1dist / JS: first pass %.1fx, best %.1fx\n", (mb / single[0]) / js_first, (mb / best) / js_best);
    if (js["tokens"].get<size_t>() != tokens) {
      std::printf("FAIL: token counts differ (r1dist %zu, JS %zu)\n", tokens, js["tokens"].get<size_t>());
      ok = false;
    }
  }

  std::printf("long single-line inputs, %.0f MB each (limits: %.0f s, %.0f bytes of extra peak memory per input byte):\n",
              a.long_mb, a.max_seconds, a.max_bytes_per_byte);
  for (const auto& kind : kLongKinds) {
    const auto r = run_child(a, kind);
    if (r.contains("error")) {
      std::printf("  %-8s FAIL: %s\n", kind.c_str(), r["error"].get<std::string>().c_str());
      ok = false;
      continue;
    }
    const double s = r["seconds"], extra = r["peak_extra_bytes"].get<double>() / (a.long_mb * 1e6);
    const bool pass = s <= a.max_seconds && extra <= a.max_bytes_per_byte;
    ok = ok && pass;
    std::printf("  %-8s %6.2f s  %9zu tokens  peak +%6.0f MB (%.1f bytes/input byte), max RSS %.0f MB  %s\n", kind.c_str(),
                s, r["tokens"].get<size_t>(), r["peak_extra_bytes"].get<double>() / 1e6, extra,
                r["max_rss_bytes"].get<double>() / 1e6, pass ? "ok" : "FAIL");
  }
  std::printf("%s\n", ok ? "bench: all limits met" : "bench: FAILED");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
  return 1;
}
