#include "common/record_file.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/crc32.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using ::vigil::testing::ReadFileOrEmpty;
using ::vigil::testing::TempDir;
using ::vigil::testing::WriteFile;

RecordFileOptions Options() {
  RecordFileOptions options;
  options.magic = "vigil-test records";
  options.version = 2;
  options.max_record_bytes = 1024;
  return options;
}

std::vector<std::string> Reopen(const std::string& path, RecordScan* scan) {
  auto file = RecordFile::Open(path, Options(), scan);
  EXPECT_TRUE(file.ok()) << file.status();
  return scan->records;
}

TEST(Crc32, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(RecordFile, AppendsSurviveReopeningInOrder) {
  TempDir dir;
  const std::string path = dir.File("r.log");
  RecordScan scan;
  {
    auto file = RecordFile::Open(path, Options(), &scan);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_TRUE(scan.records.empty());
    EXPECT_EQ(scan.version, 2u);
    ASSERT_TRUE((*file)->Append("one").ok());
    ASSERT_TRUE((*file)->Append(std::string(1024, 'x')).ok());
    ASSERT_TRUE((*file)->Append("three").ok());
    EXPECT_EQ((*file)->size_bytes(), ReadFileOrEmpty(path).size());
  }
  EXPECT_EQ(ReadFileOrEmpty(path).substr(0, 22), "vigil-test records v2\n");
  EXPECT_EQ(Reopen(path, &scan), (std::vector<std::string>{"one", std::string(1024, 'x'), "three"}));
  EXPECT_TRUE(scan.skipped.empty());
  EXPECT_EQ(scan.torn_bytes, 0u);
}

TEST(RecordFile, RefusesEmptyAndOversizedPayloads) {
  TempDir dir;
  RecordScan scan;
  auto file = RecordFile::Open(dir.File("r.log"), Options(), &scan);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->Append("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*file)->Append(std::string(1025, 'x')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*file)->Rewrite({"a", std::string(2000, 'y')}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordFile, SkipsACorruptRecordInTheMiddleAndReadsOn) {
  const std::string header = RecordFileHeader(Options());
  std::string data = header + EncodeRecord("first") + EncodeRecord("second") + EncodeRecord("third");
  // Flip a payload byte of "second".
  const size_t second = header.size() + kRecordFrameBytes + 5;
  data[second + kRecordFrameBytes + 2] ^= 0x40;
  auto scan = ScanRecords(data, Options(), "r.log");
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->records, (std::vector<std::string>{"first", "third"}));
  ASSERT_EQ(scan->skipped.size(), 1u);
  EXPECT_EQ(scan->skipped[0].offset, second);
  EXPECT_EQ(scan->skipped[0].bytes, kRecordFrameBytes + 6);
  EXPECT_EQ(scan->skipped[0].reason, "bad checksum");
  EXPECT_EQ(scan->skipped_before[0], 1u);  // "third" is the first record after the hole
  EXPECT_EQ(scan->skipped_bytes, kRecordFrameBytes + 6);
  EXPECT_EQ(scan->torn_bytes, 0u);
  EXPECT_EQ(scan->valid_bytes, data.size());
}

TEST(RecordFile, AHugeLengthFieldIsNeverTrusted) {
  const std::string header = RecordFileHeader(Options());
  std::string data = header + EncodeRecord("first");
  const size_t bad = data.size();
  data += std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8) + "junk";
  data += EncodeRecord("after");
  auto scan = ScanRecords(data, Options(), "r.log");
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->records, (std::vector<std::string>{"first", "after"}));
  ASSERT_EQ(scan->skipped.size(), 1u);
  EXPECT_EQ(scan->skipped[0].offset, bad);
  EXPECT_EQ(scan->skipped[0].reason, "impossible length 4294967295");
}

TEST(RecordFile, ZeroBytesAreNotRecords) {
  // A crash can leave a block of zeros: length 0 with CRC 0 would verify as an empty record.
  const std::string header = RecordFileHeader(Options());
  const std::string data = header + EncodeRecord("first") + std::string(64, '\0');
  auto scan = ScanRecords(data, Options(), "r.log");
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->records, std::vector<std::string>{"first"});
  EXPECT_EQ(scan->torn_bytes, 64u);
}

TEST(RecordFile, ATornTailIsCutOffAndAppendsContinueAfterIt) {
  TempDir dir;
  const std::string path = dir.File("r.log");
  const std::string header = RecordFileHeader(Options());
  const std::string good = header + EncodeRecord("first") + EncodeRecord("second");
  // A crash in the middle of appending "third".
  WriteFile(path, good + EncodeRecord("third").substr(0, 11));
  RecordScan scan;
  {
    auto file = RecordFile::Open(path, Options(), &scan);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(scan.records, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(scan.torn_bytes, 11u);
    EXPECT_TRUE(scan.skipped.empty());
    EXPECT_EQ(ReadFileOrEmpty(path), good);
    ASSERT_TRUE((*file)->Append("fourth").ok());
  }
  EXPECT_EQ(Reopen(path, &scan), (std::vector<std::string>{"first", "second", "fourth"}));
  EXPECT_EQ(scan.torn_bytes, 0u);
}

TEST(RecordFile, AShortTailOfLessThanAFrameIsTorn) {
  const std::string data = RecordFileHeader(Options()) + EncodeRecord("a") + "xyz";
  auto scan = ScanRecords(data, Options(), "r.log");
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->records, std::vector<std::string>{"a"});
  EXPECT_EQ(scan->torn_bytes, 3u);
  EXPECT_EQ(scan->valid_bytes, data.size() - 3);
}

TEST(RecordFile, RefusesAForeignHeaderOrANewerVersion) {
  auto foreign = ScanRecords("something else v1\n", Options(), "r.log");
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(foreign.status().message().find("r.log: offset 0"), std::string::npos);
  auto newer = ScanRecords("vigil-test records v3\n", Options(), "r.log");
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(newer.status().message().find("version 3"), std::string::npos);
  auto older = ScanRecords("vigil-test records v1\n", Options(), "r.log");
  ASSERT_TRUE(older.ok());
  EXPECT_EQ(older->version, 1u);
  EXPECT_FALSE(ScanRecords(std::string(300, 'a'), Options(), "r.log").ok());
}

TEST(RecordFile, OpenRefusesAFileLargerThanItsCap) {
  TempDir dir;
  const std::string path = dir.File("r.log");
  WriteFile(path, RecordFileHeader(Options()) + std::string(200, 'z'));
  RecordFileOptions options = Options();
  options.max_file_bytes = 100;
  RecordScan scan;
  auto file = RecordFile::Open(path, options, &scan);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(file.status().message().find(path), std::string::npos);
}

TEST(RecordFile, RewriteReplacesTheRecordsAtomically) {
  TempDir dir;
  const std::string path = dir.File("r.log");
  RecordScan scan;
  {
    auto file = RecordFile::Open(path, Options(), &scan);
    ASSERT_TRUE(file.ok());
    for (const char* r : {"a", "b", "c", "d"}) {
      ASSERT_TRUE((*file)->Append(r).ok());
    }
    ASSERT_TRUE((*file)->Rewrite({"c", "d"}).ok());
    EXPECT_EQ((*file)->size_bytes(), ReadFileOrEmpty(path).size());
    // Appends after a rewrite land in the new file.
    ASSERT_TRUE((*file)->Append("e").ok());
  }
  EXPECT_EQ(Reopen(path, &scan), (std::vector<std::string>{"c", "d", "e"}));
  EXPECT_TRUE(ReadFileOrEmpty(path + ".tmp").empty());
}

TEST(RecordFile, ManualSyncPolicyKeepsAppendsUntilSync) {
  TempDir dir;
  const std::string path = dir.File("r.log");
  RecordFileOptions options = Options();
  options.sync = RecordSync::kManual;
  RecordScan scan;
  auto file = RecordFile::Open(path, options, &scan);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append("a").ok());
  ASSERT_TRUE((*file)->Append("b").ok());
  ASSERT_TRUE((*file)->Sync().ok());
  RecordScan again;
  EXPECT_EQ(Reopen(path, &again), (std::vector<std::string>{"a", "b"}));
}

TEST(RecordFile, GarbageEverywhereNeverCrashesTheReader) {
  std::string data = RecordFileHeader(Options());
  uint32_t x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245 + 12345;
    data.push_back(static_cast<char>(x >> 16));
  }
  data += EncodeRecord("survivor");
  auto scan = ScanRecords(data, Options(), "r.log");
  ASSERT_TRUE(scan.ok());
  ASSERT_FALSE(scan->records.empty());
  EXPECT_EQ(scan->records.back(), "survivor");
  EXPECT_GE(scan->skipped.size(), 1u);
}

}  // namespace
}  // namespace vigil
