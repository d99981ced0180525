// TensorBoard event files (include/r1dist/formats/tensorboard.h): TFRecord framing of Event
// protobufs generated from tensorboard_event.proto (TensorFlow's field numbers).
#include "r1dist/formats/tensorboard.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/log/log.h"
#include "tensorboard_event.pb.h"

namespace r1dist {

namespace tensorboard {

namespace {

// CRC-32C, reflected polynomial 0x82F63B78, one table lookup per byte. Written here: zlib's
// crc32 is the other polynomial, and Debian's one C implementation (crc32_iscsi in Intel's
// ISA-L, libisal-dev) would bring a storage-acceleration library, which the GPU images lack,
// for ten lines; event files are a few hundred bytes per step, so speed does not matter.
const std::array<uint32_t, 256>& crc_table() {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string frame(std::string_view data) {
  std::string out, len;
  put_le(len, data.size(), 8);
  out.reserve(data.size() + 16);
  out += len;
  put_le(out, masked_crc32c(len.data(), len.size()), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

std::string encode(const Event& e) {
  pb::Event pe;
  pe.set_wall_time(e.wall_time);
  pe.set_step(e.step);
  if (!e.file_version.empty()) {
    pe.set_file_version(e.file_version);
  } else {
    auto* s = pe.mutable_summary();
    for (const auto& v : e.scalars) {
      auto* pv = s->add_value();
      pv->set_tag(v.tag);
      pv->set_simple_value(v.value);
    }
  }
  return pe.SerializeAsString();
}

std::vector<Record> read_records(std::string_view bytes, const std::string& where, std::string* error) {
  std::vector<Record> out;
  error->clear();
  size_t at = 0;
  while (at < bytes.size()) {
    const auto fail = [&](const std::string& what) { *error = where + ": " + what + " at byte " + std::to_string(at); };
    if (bytes.size() - at < 12) break;  // cut short
    const char* p = bytes.data() + at;
    if (uint32_t(get_le(p + 8, 4)) != masked_crc32c(p, 8)) {
      fail("record length fails its CRC-32C");
      break;
    }
    const uint64_t len = get_le(p, 8);
    if (len > bytes.size() - at - 12 || bytes.size() - at - 12 - len < 4) break;  // cut short
    if (uint32_t(get_le(p + 12 + len, 4)) != masked_crc32c(p + 12, len)) {
      fail("record data fails its CRC-32C");
      break;
    }
    pb::Event pe;
    if (!pe.ParseFromArray(p + 12, int(len))) {
      fail("record is not an Event");
      break;
    }
    Record r;
    r.event.wall_time = pe.wall_time();
    r.event.step = pe.step();
    if (pe.what_case() == pb::Event::kFileVersion) r.event.file_version = pe.file_version();
    if (pe.has_summary())
      for (const auto& v : pe.summary().value()) r.event.scalars.push_back({v.tag(), v.simple_value()});
    r.framed.assign(p, 12 + len + 4);
    out.push_back(std::move(r));
    at += 12 + len + 4;
  }
  return out;
}

}  // namespace tensorboard

namespace {

constexpr const char* kFileVersion = "brain.Event:2";

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The event files in DIR, by name: the order TensorBoard reads them in.
std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d))
    if (std::strstr(e->d_name, "tfevents")) out.push_back(dir + "/" + e->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  for (char* c = buf; *c; ++c)
    if (*c == '/') *c = '_';
  return buf;
}

}  // namespace

struct TensorBoardWriter::Impl {
  std::unique_ptr<AppendFile> out;

  void write(int64_t step, const char* group, const std::vector<MetricValue>& cols) {
    tensorboard::Event e;
    e.wall_time = now_seconds();
    e.step = step;
    for (const auto& c : cols) e.scalars.push_back({std::string(group) + "/" + c.name, float(c.value)});
    out->write(tensorboard::frame(tensorboard::encode(e)));
    out->sync();
  }
};

TensorBoardWriter::TensorBoardWriter(const std::string& dir, bool resume, int64_t resume_step) : impl_(new Impl) {
  // A crash inside an earlier replace_dir can leave only DIR.old: its files are the history.
  const std::string old = dir + ".old", staged = dir + ".staged";
  const std::string from = is_dir(dir) ? dir : is_dir(old) ? old : "";
  std::string kept;
  size_t n_kept = 0, n_dropped = 0;
  if (resume && !from.empty()) {
    for (const auto& path : event_files(from)) {
      std::string error;
      const auto records = tensorboard::read_records(read_file(path), path, &error);
      if (!error.empty()) log::warn("tensorboard: ", error, "; the records after it are dropped");
      for (const auto& r : records) {
        if (!r.event.file_version.empty()) continue;
        if (r.event.step <= resume_step) {
          kept += r.framed;
          ++n_kept;
        } else {
          ++n_dropped;
        }
      }
    }
    log::info("tensorboard: resuming ", dir, " at step ", resume_step, ": kept ", n_kept, " events, dropped ",
              n_dropped, " of later steps");
  }
  // One new file (named as TensorFlow names them) in a staged directory that replaces DIR.
  remove_tree(staged);
  make_dirs(staged);
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(now_seconds()));
  const std::string name =
      std::string("events.out.tfevents.") + stamp + "." + hostname() + "." + std::to_string(::getpid()) + ".r1dist";
  tensorboard::Event version;
  version.wall_time = now_seconds();
  version.file_version = kFileVersion;
  AtomicFile f(staged + "/" + name);
  f.write(tensorboard::frame(tensorboard::encode(version)));
  f.write(kept);
  f.commit();
  replace_dir(staged, dir);
  remove_tree(old);
  impl_->out = std::make_unique<AppendFile>(dir + "/" + name);
}

TensorBoardWriter::~TensorBoardWriter() = default;

void TensorBoardWriter::append(const StepRecord& r) { impl_->write(r.step, "train", metric_values(r)); }
void TensorBoardWriter::append(const EvalRecord& r) { impl_->write(r.step, "eval", metric_values(r)); }
void TensorBoardWriter::append(int64_t step, const EvalSummary& s) {
  impl_->write(step, "suite", eval_group_scalars(s));
}
const std::string& TensorBoardWriter::file() const { return impl_->out->path(); }

}  // namespace r1dist
