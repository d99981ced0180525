// TensorBoard event files (formats/tensorboard.h): CRC-32C against its check value, the
// TFRecord framing byte by byte, records read back (a cut tail and a damaged byte), and the
// writer's resume (events after the checkpoint dropped, one file, appends after them). The
// events of a real run are read by an independent decoder in tests/e2e/test_trainer.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "r1dist/base/fs.h"
#include "r1dist/formats/tensorboard.h"
#include "support/temp.h"

namespace {

using namespace r1dist;
using r1dist::test::TempDir;

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

TEST(TensorBoard, Crc32cAndTheTfRecordFraming) {
  EXPECT_EQ(tensorboard::crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(tensorboard::crc32c("", 0), 0u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(tensorboard::masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);

  const std::string data = "123456789";
  const std::string f = tensorboard::frame(data);
  ASSERT_EQ(f.size(), 8 + 4 + data.size() + 4);
  EXPECT_EQ(le(f, 0, 8), data.size());
  EXPECT_EQ(le(f, 8, 4), tensorboard::masked_crc32c(f.data(), 8));
  EXPECT_EQ(f.substr(12, data.size()), data);
  EXPECT_EQ(le(f, 12 + data.size(), 4), tensorboard::masked_crc32c(data.data(), data.size()));
}

TEST(TensorBoard, RecordsReadBackAndStopAtACutOrADamagedRecord) {
  tensorboard::Event v;
  v.file_version = "brain.Event:2";
  tensorboard::Event s;
  s.step = 3;
  s.wall_time = 1.5;
  s.scalars = {{"train/loss", 2.5f}, {"train/mem_gb", 0.0f}};
  const std::string bytes = tensorboard::frame(tensorboard::encode(v)) + tensorboard::frame(tensorboard::encode(s));
  std::string error;
  auto r = tensorboard::read_records(bytes, "f", &error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].event.file_version, "brain.Event:2");
  EXPECT_EQ(r[1].event.step, 3);
  EXPECT_EQ(r[1].event.wall_time, 1.5);
  ASSERT_EQ(r[1].event.scalars.size(), 2u);
  EXPECT_EQ(r[1].event.scalars[0].tag, "train/loss");
  EXPECT_EQ(r[1].event.scalars[0].value, 2.5f);
  EXPECT_EQ(r[1].event.scalars[1].tag, "train/mem_gb");
  EXPECT_EQ(r[0].framed + r[1].framed, bytes);

  // A writer killed mid-record: the whole records before it, no error.
  r = tensorboard::read_records(bytes.substr(0, bytes.size() - 3), "f", &error);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(error, "");
  // A damaged byte in the second record's data: its CRC names it.
  std::string bad = bytes;
  bad[r[0].framed.size() + 14] ^= 1;
  r = tensorboard::read_records(bad, "f", &error);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_NE(error.find("f: record data fails its CRC-32C at byte " + std::to_string(r[0].framed.size())),
            std::string::npos)
      << error;
}

std::vector<int64_t> steps_in(const std::string& dir, size_t* files = nullptr) {
  std::vector<int64_t> out;
  if (files) *files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (files) ++*files;
    std::string error;
    for (const auto& r : tensorboard::read_records(read_file(e.path().string()), "", &error))
      out.push_back(r.event.file_version.empty() ? r.event.step : -1);
    EXPECT_EQ(error, "");
  }
  return out;
}

TEST(TensorBoard, AResumeDropsTheEventsAfterItsStepAndAppendsAfterTheRest) {
  TempDir d;
  const std::string dir = d / "tensorboard";
  {
    TensorBoardWriter w(dir, false, 0);
    w.append(EvalRecord{0, 3.0, 0.0, 10});
    for (int64_t k = 1; k <= 7; ++k) {
      StepRecord r;
      r.step = k;
      r.loss = 1.0 / double(k);
      w.append(r);
      if (k == 5) w.append(EvalRecord{5, 2.0, 0.1, 10});
    }
  }
  EXPECT_EQ(steps_in(dir), (std::vector<int64_t>{-1, 0, 1, 2, 3, 4, 5, 5, 6, 7}));
  {
    TensorBoardWriter w(dir, true, 5);
    StepRecord r;
    r.step = 6;
    w.append(r);
  }
  size_t files = 0;
  EXPECT_EQ(steps_in(dir, &files), (std::vector<int64_t>{-1, 0, 1, 2, 3, 4, 5, 5, 6}));
  EXPECT_EQ(files, 1u);
  // A fresh run starts the directory empty.
  { TensorBoardWriter w(dir, false, 0); }
  EXPECT_EQ(steps_in(dir), (std::vector<int64_t>{-1}));
}

}  // namespace
