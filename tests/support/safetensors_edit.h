// Rewriting a safetensors file for a test, as another tool (or a damaged download) would have
// written it: every tensor read into memory, edited (dtype, shape, bytes; tensors dropped or
// added), and written back in place. Torch-free (the core, torch and e2e tests include it).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "r1dist/formats/safetensors.h"

namespace r1dist::test {

struct StoredTensor {
  std::string name;
  st::DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  // Row `r` of a 2-D F32 tensor.
  float* row_f32(int64_t r) { return reinterpret_cast<float*>(bytes.data()) + r * shape.at(1); }
};

template <class Edit>
void rewrite_safetensors(const std::string& path, Edit edit) {
  std::vector<StoredTensor> tensors;
  std::map<std::string, std::string> metadata;
  {
    const auto f = st::File::open(path);
    metadata = f.metadata();
    for (const auto& t : f.tensors()) {
      const uint8_t* d = f.data(t);
      tensors.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(d, d + (t.end - t.begin))});
    }
  }
  edit(tensors);
  std::vector<st::WriteSpec> specs;
  std::vector<std::vector<uint8_t>> bytes;
  for (auto& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    bytes.push_back(std::move(t.bytes));
  }
  st::write_file(path, specs, bytes, metadata);
}

// The tensor called `name` (a test failure when there is none).
inline StoredTensor& tensor_named(std::vector<StoredTensor>& tensors, const std::string& name) {
  for (auto& t : tensors)
    if (t.name == name) return t;
  ADD_FAILURE() << "no tensor " << name;
  static StoredTensor none;
  return none;
}

}  // namespace r1dist::test
