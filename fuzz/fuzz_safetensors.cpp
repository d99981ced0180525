// The safetensors reader (formats/safetensors.h) on arbitrary bytes: header length, JSON
// header, dtypes, shapes, offsets; every tensor's data pointer is read end to end.
#include "fuzz_input.h"
#include "r1dist/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = r1dist::fuzz::write_input("model.safetensors", data, size);
  return r1dist::fuzz::refuse_cleanly([&] {
    const auto f = r1dist::st::File::open(path);
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
      const uint8_t* p = f.data(t);
      for (uint64_t i = 0; i < t.nbytes(); ++i) sink ^= p[i];
      (void)f.at(t.name);
    }
  });
}
