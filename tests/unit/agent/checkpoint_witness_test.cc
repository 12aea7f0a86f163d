// The agent as a witness of the audit chain: the highest checkpoint is kept (an older one and a
// fork are kept out), it survives a restart on disk, a damaged file counts as none without being
// touched, a failed write keeps the previous file, and hostile fields are refused by name.
#include "agent/checkpoint_witness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/record_file.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::HasSubstr;

std::string ReadWitnessFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteWitnessFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// A hash of 64 lowercase hex digits made of `digit`.
std::string HexHash(char digit) { return std::string(kCheckpointHashChars, digit); }

v1::AuditCheckpoint WitnessCheckpoint(uint64_t seq, char digit = 'a') {
  v1::AuditCheckpoint c;
  c.set_seq(seq);
  c.set_hash(HexHash(digit));
  c.set_time_unix_ms(1'700'000'000'000 + static_cast<int64_t>(seq % 1000));
  c.set_signature(std::string(64, '\x5a'));
  c.set_key_id("0123456789abcdef");
  return c;
}

class CheckpointWitnessTest : public ::testing::Test {
 protected:
  std::unique_ptr<CheckpointWitness> Open() {
    return CheckpointWitness::Open({.path = path_, .clock = &clock_});
  }
  // The sequence held, 0 when none.
  static uint64_t HeldSeq(const CheckpointWitness& w) {
    const std::optional<v1::AuditCheckpoint> held = w.Held();
    return held.has_value() ? held->seq() : 0;
  }

  testing::TempDir dir_;
  std::string path_ = dir_.File("web-1.checkpoint");
  SimulatedClock clock_;
};

TEST_F(CheckpointWitnessTest, KeepsTheHighestAndKeepsOutOlderOnesAndForks) {
  auto w = Open();
  EXPECT_FALSE(w->Held().has_value());
  EXPECT_EQ(w->Offer(WitnessCheckpoint(5, 'a')), CheckpointOffer::kTaken);
  EXPECT_EQ(HeldSeq(*w), 5u);
  // A controller restored from an older database cannot erase what the agent holds.
  EXPECT_EQ(w->Offer(WitnessCheckpoint(3, 'b')), CheckpointOffer::kOlder);
  EXPECT_EQ(w->Offer(WitnessCheckpoint(3, 'b')), CheckpointOffer::kOlder);
  // The same sequence with another hash is a fork: kept out too.
  EXPECT_EQ(w->Offer(WitnessCheckpoint(5, 'c')), CheckpointOffer::kFork);
  EXPECT_EQ(w->Held()->hash(), HexHash('a'));
  EXPECT_EQ(w->Offer(WitnessCheckpoint(5, 'a')), CheckpointOffer::kAlreadyHeld);
  // A newer one replaces it, whatever its hash.
  EXPECT_EQ(w->Offer(WitnessCheckpoint(9, 'd')), CheckpointOffer::kTaken);
  EXPECT_EQ(HeldSeq(*w), 9u);
  EXPECT_EQ(w->Held()->hash(), HexHash('d'));
  const CheckpointWitnessStats stats = w->stats();
  EXPECT_EQ(stats.taken, 2u);
  EXPECT_EQ(stats.older, 2u);
  EXPECT_EQ(stats.forks, 1u);
  EXPECT_EQ(stats.invalid, 0u);
  EXPECT_EQ(stats.write_errors, 0u);
  EXPECT_FALSE(stats.unsaved);
  EXPECT_EQ(w->StatusLine(),
            "audit witness: held_seq=9 taken=2 older=2 forks=1 invalid=0 write_errors=0 "
            "unsaved=no");
}

TEST_F(CheckpointWitnessTest, TheHeldCheckpointSurvivesARestartAndStillKeepsOutOlderOnes) {
  const v1::AuditCheckpoint sent = WitnessCheckpoint(42, '7');
  {
    auto w = Open();
    ASSERT_EQ(w->Offer(sent), CheckpointOffer::kTaken);
  }
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
  auto w = Open();
  ASSERT_TRUE(w->Held().has_value());
  EXPECT_EQ(w->Held()->SerializeAsString(), sent.SerializeAsString());
  EXPECT_FALSE(w->stats().damaged_at_start);
  EXPECT_EQ(w->Offer(WitnessCheckpoint(41, '7')), CheckpointOffer::kOlder);
  EXPECT_EQ(w->Offer(WitnessCheckpoint(42, '8')), CheckpointOffer::kFork);
  EXPECT_EQ(HeldSeq(*Open()), 42u);
}

TEST_F(CheckpointWitnessTest, AMissingFileIsNoCheckpointYet) {
  auto w = Open();
  EXPECT_FALSE(w->Held().has_value());
  EXPECT_FALSE(w->stats().damaged_at_start);
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_EQ(w->StatusLine(),
            "audit witness: held_seq=0 taken=0 older=0 forks=0 invalid=0 write_errors=0 "
            "unsaved=no");
}

TEST_F(CheckpointWitnessTest, UnknownFieldsAreNeitherKeptNorReported) {
  // Field 99, a 4000-byte string, after the known ones: what a hostile controller could add.
  std::string wire = WitnessCheckpoint(3).SerializeAsString();
  wire += absl::StrCat("\x9a\x06", "\xa0\x1f", std::string(4000, 'x'));
  v1::AuditCheckpoint padded;
  ASSERT_TRUE(padded.ParseFromString(wire));
  ASSERT_GT(padded.ByteSizeLong(), 4000u);
  auto w = Open();
  ASSERT_EQ(w->Offer(padded), CheckpointOffer::kTaken);
  EXPECT_EQ(w->Held()->SerializeAsString(), WitnessCheckpoint(3).SerializeAsString());
  EXPECT_LT(ReadWitnessFile(path_).size(), 300u);
  EXPECT_EQ(Open()->Held()->SerializeAsString(), WitnessCheckpoint(3).SerializeAsString());
}

TEST_F(CheckpointWitnessTest, ADamagedFileIsNoneAndIsLeftAloneUntilAValidCheckpointComes) {
  const std::string good = EncodeCheckpointFile(WitnessCheckpoint(10));
  std::string flipped = good;
  flipped[flipped.size() - 3] ^= 0x01;  // a bit in the record: the checksum no longer matches
  v1::AuditCheckpoint out_of_bounds = WitnessCheckpoint(10);
  out_of_bounds.set_hash("not-hex");
  const std::vector<std::pair<std::string, std::string>> damaged = {
      {"garbage", "\x01\x02 this is not a checkpoint file"},
      {"empty", ""},
      {"header only", RecordFileHeader({.magic = std::string(kCheckpointFileMagic)})},
      {"truncated", good.substr(0, good.size() - 5)},
      {"bit flip", flipped},
      {"two records", good + EncodeRecord(WitnessCheckpoint(11).SerializeAsString())},
      {"not a checkpoint",
       RecordFileHeader({.magic = std::string(kCheckpointFileMagic)}) + EncodeRecord("\xff\xff")},
      {"field out of bounds", EncodeCheckpointFile(out_of_bounds)},
      {"too large", good + std::string(kMaxCheckpointFileBytes, '\0')},
      {"newer format", absl::StrCat(kCheckpointFileMagic, " v2\n")},
  };
  for (const auto& [what, bytes] : damaged) {
    SCOPED_TRACE(what);
    WriteWitnessFile(path_, bytes);
    auto w = Open();
    EXPECT_FALSE(w->Held().has_value());
    EXPECT_TRUE(w->stats().damaged_at_start);
    EXPECT_EQ(ReadWitnessFile(path_), bytes) << "the damaged file was touched";
    // Even a low sequence replaces it: nothing valid is held.
    EXPECT_EQ(w->Offer(WitnessCheckpoint(2)), CheckpointOffer::kTaken);
    EXPECT_EQ(HeldSeq(*Open()), 2u);
  }
}

TEST_F(CheckpointWitnessTest, AFolderInPlaceOfTheFileIsNone) {
  std::filesystem::create_directories(path_);
  auto w = Open();
  EXPECT_FALSE(w->Held().has_value());
  EXPECT_TRUE(w->stats().damaged_at_start);
  // It cannot be replaced either: held in memory, counted.
  EXPECT_EQ(w->Offer(WitnessCheckpoint(4)), CheckpointOffer::kTaken);
  EXPECT_EQ(HeldSeq(*w), 4u);
  EXPECT_TRUE(w->stats().unsaved);
  EXPECT_EQ(w->stats().write_errors, 1u);
}

TEST_F(CheckpointWitnessTest, DecodingNamesTheFileAndWhatIsWrong) {
  absl::StatusOr<v1::AuditCheckpoint> decoded = DecodeCheckpointFile("junk", "/x/web-1.checkpoint");
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(decoded.status().message(), HasSubstr("/x/web-1.checkpoint"));
  v1::AuditCheckpoint bad = WitnessCheckpoint(10);
  bad.set_key_id(std::string(65, 'k'));
  decoded = DecodeCheckpointFile(EncodeCheckpointFile(bad), "/x/web-1.checkpoint");
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(decoded.status().message(), HasSubstr("field 'key_id'"));
  decoded = DecodeCheckpointFile(EncodeCheckpointFile(WitnessCheckpoint(10)), "f");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->SerializeAsString(), WitnessCheckpoint(10).SerializeAsString());
}

TEST_F(CheckpointWitnessTest, AFailedWriteKeepsThePreviousFileAndIsTriedAgain) {
  bool fail = false;
  int writes = 0;
  auto w = CheckpointWitness::Open({.path = path_,
                                    .write =
                                        [&](const std::string& path, absl::string_view content) {
                                          ++writes;
                                          if (fail) {
                                            return absl::UnavailableError(
                                                "injected: no space left on device");
                                          }
                                          return WriteFileAtomically(path, content);
                                        },
                                    .clock = &clock_});
  ASSERT_EQ(w->Offer(WitnessCheckpoint(5)), CheckpointOffer::kTaken);
  const std::string before = ReadWitnessFile(path_);
  fail = true;
  // Taken and reported from memory, but the file keeps the previous one.
  EXPECT_EQ(w->Offer(WitnessCheckpoint(9)), CheckpointOffer::kTaken);
  EXPECT_EQ(HeldSeq(*w), 9u);
  EXPECT_TRUE(w->stats().unsaved);
  EXPECT_EQ(w->stats().write_errors, 1u);
  EXPECT_EQ(ReadWitnessFile(path_), before);
  EXPECT_EQ(HeldSeq(*Open()), 5u);
  // Sent again on the next stream while the disk still fails: counted again.
  EXPECT_EQ(w->Offer(WitnessCheckpoint(9)), CheckpointOffer::kAlreadyHeld);
  EXPECT_EQ(w->stats().write_errors, 2u);
  // The disk is back: the next send writes it, and then no more writes are needed.
  fail = false;
  EXPECT_EQ(w->Offer(WitnessCheckpoint(9)), CheckpointOffer::kAlreadyHeld);
  EXPECT_FALSE(w->stats().unsaved);
  EXPECT_EQ(HeldSeq(*Open()), 9u);
  const int after = writes;
  EXPECT_EQ(w->Offer(WitnessCheckpoint(9)), CheckpointOffer::kAlreadyHeld);
  EXPECT_EQ(writes, after);
}

// A real read-only folder: a tmpfs remounted read-only as root (root writes through mode bits),
// the folder's mode otherwise. Skipped when neither can be arranged.
TEST_F(CheckpointWitnessTest, AReadOnlyFolderKeepsThePreviousFileAndTheAgentGoesOn) {
  const std::string folder = dir_.File("state");
  std::filesystem::create_directories(folder);
  const bool root = geteuid() == 0;
  if (root && mount("tmpfs", folder.c_str(), "tmpfs", 0, "size=64k") != 0) {
    GTEST_SKIP() << "as root, needs to mount a tmpfs";
  }
  struct Unmount {
    std::string path;
    bool mounted;
    ~Unmount() {
      if (mounted) {
        umount2(path.c_str(), MNT_DETACH);
      } else {
        chmod(path.c_str(), 0700);
      }
    }
  } unmount{folder, root};
  const std::string path = folder + "/web-1.checkpoint";
  auto w = CheckpointWitness::Open({.path = path, .clock = &clock_});
  ASSERT_EQ(w->Offer(WitnessCheckpoint(5)), CheckpointOffer::kTaken);
  ASSERT_FALSE(w->stats().unsaved);
  const std::string before = ReadWitnessFile(path);
  if (root) {
    ASSERT_EQ(mount("tmpfs", folder.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=64k"), 0)
        << std::strerror(errno);
  } else {
    ASSERT_EQ(chmod(folder.c_str(), 0500), 0);
  }
  for (uint64_t seq = 6; seq < 20; ++seq) {  // more failures than the log lets through
    EXPECT_EQ(w->Offer(WitnessCheckpoint(seq)), CheckpointOffer::kTaken);
  }
  EXPECT_EQ(HeldSeq(*w), 19u);
  EXPECT_TRUE(w->stats().unsaved);
  EXPECT_EQ(w->stats().write_errors, 14u);
  EXPECT_EQ(ReadWitnessFile(path), before);
  EXPECT_EQ(HeldSeq(*CheckpointWitness::Open({.path = path})), 5u);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(CheckpointWitnessTest, HostileFieldsAreRefusedByName) {
  auto w = Open();
  struct Case {
    std::string what;
    v1::AuditCheckpoint checkpoint;
    std::string field;
  };
  std::vector<Case> cases;
  auto add = [&](std::string what, std::string field, auto change) {
    v1::AuditCheckpoint c = WitnessCheckpoint(7);
    change(c);
    cases.push_back({std::move(what), std::move(c), std::move(field)});
  };
  add("seq 0", "seq", [](v1::AuditCheckpoint& c) { c.set_seq(0); });
  add("empty hash", "hash", [](v1::AuditCheckpoint& c) { c.clear_hash(); });
  add("short hash", "hash", [](v1::AuditCheckpoint& c) { c.set_hash(HexHash('a').substr(1)); });
  add("long hash", "hash", [](v1::AuditCheckpoint& c) { c.set_hash(HexHash('a') + "a"); });
  add("uppercase hash", "hash", [](v1::AuditCheckpoint& c) { c.set_hash(HexHash('A')); });
  add("non-hex hash", "hash", [](v1::AuditCheckpoint& c) { c.set_hash(HexHash('g')); });
  add("hash with a NUL", "hash", [](v1::AuditCheckpoint& c) { (*c.mutable_hash())[10] = '\0'; });
  add("huge signature", "signature", [](v1::AuditCheckpoint& c) {
    c.set_signature(std::string(kMaxCheckpointSignatureBytes + 1, 's'));
  });
  add("huge key_id", "key_id",
      [](v1::AuditCheckpoint& c) { c.set_key_id(std::string(kMaxCheckpointKeyIdChars + 1, 'k')); });
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const absl::Status checked = CheckCheckpointFields(c.checkpoint);
    ASSERT_FALSE(checked.ok());
    EXPECT_THAT(checked.message(), HasSubstr(absl::StrCat("field '", c.field, "'")));
    EXPECT_EQ(w->Offer(c.checkpoint), CheckpointOffer::kInvalid);
  }
  EXPECT_FALSE(w->Held().has_value());
  EXPECT_EQ(w->stats().invalid, cases.size());
  EXPECT_FALSE(std::filesystem::exists(path_));
  // At the bounds, and with no signature at all (the agent does not verify it): taken.
  v1::AuditCheckpoint edge = WitnessCheckpoint(UINT64_MAX / 2);
  edge.set_signature(std::string(kMaxCheckpointSignatureBytes, 's'));
  edge.set_key_id(std::string(kMaxCheckpointKeyIdChars, 'k'));
  EXPECT_EQ(w->Offer(edge), CheckpointOffer::kTaken);
  v1::AuditCheckpoint unsigned_one = WitnessCheckpoint(UINT64_MAX / 2 + 1);
  unsigned_one.clear_signature();
  unsigned_one.clear_key_id();
  EXPECT_EQ(w->Offer(unsigned_one), CheckpointOffer::kTaken);
  // An invalid one with a higher sequence does not displace what is held.
  v1::AuditCheckpoint higher = WitnessCheckpoint(UINT64_MAX);
  higher.set_hash("zz");
  EXPECT_EQ(w->Offer(higher), CheckpointOffer::kInvalid);
  EXPECT_EQ(HeldSeq(*Open()), UINT64_MAX / 2 + 1);
}

TEST_F(CheckpointWitnessTest, WithoutAPathItIsKeptInMemory) {
  auto w = CheckpointWitness::Open({});
  EXPECT_EQ(w->Offer(WitnessCheckpoint(3)), CheckpointOffer::kTaken);
  EXPECT_EQ(w->Offer(WitnessCheckpoint(2)), CheckpointOffer::kOlder);
  EXPECT_EQ(HeldSeq(*w), 3u);
  EXPECT_FALSE(w->stats().unsaved);
}

}  // namespace
}  // namespace vigil::agent
