// GGUF v3 writer and tensor encodings (formats/gguf.h).
#include "r1dist/formats/gguf.h"

#include <cmath>
#include <cstring>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/log/log.h"

namespace r1dist::gguf {

namespace {

// GGUF's metadata value types.
enum ValueType : uint32_t { U32 = 4, I32 = 5, F32V = 6, BOOL = 7, STRING = 8, ARRAY = 9 };

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // the writer runs on little-endian hosts only (static_assert below)
  out.append(b, sizeof(T));
}
void put_str(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t align_up(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is written little-endian");

}  // namespace

const char* type_name(TensorType t) {
  switch (t) {
    case TensorType::F32: return "F32";
    case TensorType::F16: return "F16";
    case TensorType::Q8_0: return "Q8_0";
    case TensorType::BF16: return "BF16";
  }
  return "?";
}

uint64_t tensor_bytes(TensorType t, int64_t numel) {
  switch (t) {
    case TensorType::F32: return uint64_t(numel) * 4;
    case TensorType::F16:
    case TensorType::BF16: return uint64_t(numel) * 2;
    case TensorType::Q8_0: return uint64_t(numel / kQ8Block) * (2 + kQ8Block);
  }
  return 0;
}

bool can_store(TensorType t, int64_t row) { return t != TensorType::Q8_0 || row % kQ8Block == 0; }

uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 64);  // NaN: quiet
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

float bf16_to_f32(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

uint16_t f32_to_f16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (a < 0x38800000u) {                                  // below 2^-14: subnormal (or zero)
    // value / 2^-24, rounded to nearest even, in integer arithmetic on the significand
    const int exp = int(a >> 23);
    if (exp < 102) return uint16_t(sign);  // below 2^-25: rounds to zero
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - exp;  // mant * 2^(exp-150) / 2^-24 = mant >> (126 - exp)
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    return uint16_t(sign | (q + (rem > half || (rem == half && (q & 1)))));
  }
  // normal: rebias the exponent, round the 13 dropped bits to nearest even (a carry into the
  // exponent is the right result)
  const uint32_t r = a - 0x38000000u;
  return uint16_t(sign | ((r + 0xfffu + ((r >> 13) & 1)) >> 13));
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(float(mant), -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(float(mant | 0x400u), int(exp) - 25);
  }
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u |= sign;
  std::memcpy(&v, &u, 4);
  return v;
}

void encode(TensorType t, const float* src, size_t n, uint8_t* dst) {
  switch (t) {
    case TensorType::F32: std::memcpy(dst, src, n * 4); return;
    case TensorType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case TensorType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case TensorType::Q8_0:
      check(n % kQ8Block == 0, "gguf: Q8_0 needs a multiple of 32 values");
      for (size_t b = 0; b < n / kQ8Block; ++b) {
        const float* x = src + b * kQ8Block;
        uint8_t* out = dst + b * (2 + kQ8Block);
        float amax = 0;
        for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = f32_to_f16(d);
        std::memcpy(out, &dh, 2);
        for (int j = 0; j < kQ8Block; ++j) {
          const float q = std::round(x[j] * id);  // halves away from zero, as roundf
          out[2 + j] = uint8_t(int8_t(q));
        }
      }
      return;
  }
}

// ---- metadata ----------------------------------------------------------------------------

void Metadata::set(const std::string& key, std::string value) {
  for (auto& e : entries_)
    if (e.key == key) {
      e.value = std::move(value);
      return;
    }
  entries_.push_back({key, std::move(value)});
}

bool Metadata::has(const std::string& key) const {
  for (const auto& e : entries_)
    if (e.key == key) return true;
  return false;
}

void Metadata::set_u32(const std::string& key, uint32_t v) {
  std::string s;
  put<uint32_t>(s, U32);
  put(s, v);
  set(key, std::move(s));
}

void Metadata::set_i32(const std::string& key, int32_t v) {
  std::string s;
  put<uint32_t>(s, I32);
  put(s, v);
  set(key, std::move(s));
}

void Metadata::set_f32(const std::string& key, float v) {
  std::string s;
  put<uint32_t>(s, F32V);
  put(s, v);
  set(key, std::move(s));
}

void Metadata::set_bool(const std::string& key, bool v) {
  std::string s;
  put<uint32_t>(s, BOOL);
  put<uint8_t>(s, v ? 1 : 0);
  set(key, std::move(s));
}

void Metadata::set_str(const std::string& key, const std::string& v) {
  std::string s;
  put<uint32_t>(s, STRING);
  put_str(s, v);
  set(key, std::move(s));
}

void Metadata::set_str_array(const std::string& key, const std::vector<std::string>& v) {
  std::string s;
  put<uint32_t>(s, ARRAY);
  put<uint32_t>(s, STRING);
  put<uint64_t>(s, v.size());
  for (const auto& x : v) put_str(s, x);
  set(key, std::move(s));
}

void Metadata::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::string s;
  put<uint32_t>(s, ARRAY);
  put<uint32_t>(s, I32);
  put<uint64_t>(s, v.size());
  for (int32_t x : v) put(s, x);
  set(key, std::move(s));
}

std::string Metadata::serialize() const {
  std::string out;
  for (const auto& e : entries_) {
    put_str(out, e.key);
    out += e.value;
  }
  return out;
}

// ---- the file ----------------------------------------------------------------------------

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t write_file(const std::string& path, const Metadata& meta_in, const std::vector<TensorSpec>& specs,
                    const FillFn& fill) {
  Metadata meta = meta_in;
  meta.set_u32("general.alignment", uint32_t(kAlignment));
  std::string head;
  head += "GGUF";
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, specs.size());
  put<uint64_t>(head, meta.size());
  head += meta.serialize();
  uint64_t offset = 0;
  std::vector<uint64_t> nbytes;
  for (const auto& t : specs) {
    check(!t.shape.empty(), "gguf: " + path + ": tensor " + t.name + " has no dimensions");
    check(can_store(t.type, t.shape.back()),
          "gguf: " + path + ": tensor " + t.name + " has rows of " + std::to_string(t.shape.back()) +
              " values, not whole blocks of " + type_name(t.type));
    put_str(head, t.name);
    put<uint32_t>(head, uint32_t(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<uint64_t>(head, uint64_t(*d));
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, offset);
    nbytes.push_back(tensor_bytes(t.type, t.numel()));
    offset += align_up(nbytes.back());
  }
  head.resize(align_up(head.size()), '\0');
  const uint64_t total = head.size() + offset;

  AtomicFile f(path);
  f.write(head);
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& t = specs[i];
    values.assign(size_t(t.numel()), 0.0f);
    fill(i, values);
    bytes.assign(align_up(nbytes[i]), 0);
    encode(t.type, values.data(), values.size(), bytes.data());
    f.write(bytes.data(), bytes.size());
    std::string shape;
    for (int64_t d : t.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    log::progress("export: [" + std::to_string(i + 1) + "/" + std::to_string(specs.size()) + "] " + t.name + " " +
                  type_name(t.type) + " (" + shape + ")");
  }
  log::progress_done();
  f.commit();
  return total;
}

}  // namespace r1dist::gguf
