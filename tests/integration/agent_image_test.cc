// The agent's image recipe (deploy/images/agent): collect-rootfs.sh gathers exactly what `ldd`
// says the agent loads, and the agent runs from that folder alone, under chroot.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

// The regular files under `root`, relative to it.
std::set<std::string> FilesUnder(const std::string& root) {
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) {
      files.insert(std::filesystem::relative(entry.path(), root).string());
    }
  }
  return files;
}

// argv run with `root` as its root: chroot as root, else in a user namespace of our own.
std::vector<std::string> InRoot(const std::string& root, std::vector<std::string> argv) {
  std::vector<std::string> out = {"chroot", root};
  if (geteuid() != 0) {
    out = {"unshare", "--map-root-user", "chroot", root};
  }
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

class AgentImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandResult collected =
        RunCommand({testing::SourcePath("deploy/images/agent/collect-rootfs.sh"),
                    BinaryPath("vigil-agent"), root_}, absl::Seconds(30));
    ASSERT_EQ(collected.exit_code, 0) << collected.output;
    CommandResult probe = RunCommand(InRoot(root_, {"/usr/bin/vigil-agent", "--version"}));
    if (probe.exit_code != 0 && absl::StrContains(probe.output, "Operation not permitted")) {
      GTEST_SKIP() << "neither chroot nor a user namespace is allowed here: " << probe.output;
    }
  }
  testing::TempDir dir_;
  const std::string root_ = dir_.File("rootfs");
};

TEST_F(AgentImageTest, TheRootfsHoldsTheAgentAndExactlyItsLibraries) {
  CommandResult ldd = RunCommand({"ldd", BinaryPath("vigil-agent")});
  ASSERT_EQ(ldd.exit_code, 0) << ldd.output;
  std::set<std::string> expected = {"usr/bin/vigil-agent"};
  for (absl::string_view line : absl::StrSplit(ldd.stdout_text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() >= 3 && fields[1] == "=>" && absl::StartsWith(fields[2], "/")) {
      expected.insert(fields[2].substr(1));
    } else if (!fields.empty() && absl::StartsWith(fields[0], "/")) {
      expected.insert(fields[0].substr(1));  // the dynamic loader
    }
  }
  EXPECT_EQ(FilesUnder(root_), expected);
#if VIGIL_PORTABLE_AGENT
  // Everything but glibc (and libpq's chain, when libpq is linked shared) is inside the binary.
  std::vector<std::string> bundled = {"libgrpc", "libabsl",    "libprotobuf", "libstdc++",
                                      "libspdlog", "libfmt",   "libyaml-cpp", "libhiredis",
                                      "libpqxx",   "libssl",   "libcrypto"};
#if VIGIL_PORTABLE_LIBPQ_STATIC
  for (const char* chain : {"libpq", "libkrb5", "libgssapi", "libldap", "libgnutls", "libp11"}) {
    bundled.emplace_back(chain);
  }
  // Nothing but the loader and glibc's libc and libm.
  EXPECT_LE(expected.size(), 4u) << absl::StrJoin(expected, ", ");
#endif
  for (const std::string& file : expected) {
    for (const std::string& name : bundled) {
      EXPECT_FALSE(absl::StrContains(file, "/" + name)) << file << " should be linked in statically";
    }
  }
#endif
}

TEST_F(AgentImageTest, TheAgentRunsFromTheRootfsAloneAndNeedsEveryLibraryInIt) {
#if VIGIL_SANITIZED_BUILD
  // The image is a release artifact. AddressSanitizer's runtime reads the stack's bounds from
  // /proc, which a container runtime mounts and this bare chroot does not: it reports a stack
  // overflow that is not there (google/sanitizers#189).
  GTEST_SKIP() << "a sanitizer build's agent needs /proc, which the rootfs under chroot lacks";
#endif
  CommandResult version = RunCommand(InRoot(root_, {"/usr/bin/vigil-agent", "--version"}));
  EXPECT_EQ(version.exit_code, 0) << version.output;
  EXPECT_EQ(version.stdout_text, absl::StrCat("vigil-agent ", VIGIL_VERSION, "\n"));
  // Nothing comes from the host: without glibc's libc in the folder the agent cannot start.
  bool removed = false;
  for (const std::string& file : FilesUnder(root_)) {
    if (absl::EndsWith(file, "/libc.so.6")) {
      std::filesystem::remove(root_ + "/" + file);
      removed = true;
    }
  }
  ASSERT_TRUE(removed) << "no libc.so.6 collected";
  CommandResult broken = RunCommand(InRoot(root_, {"/usr/bin/vigil-agent", "--version"}));
  EXPECT_NE(broken.exit_code, 0) << broken.output;
  EXPECT_TRUE(absl::StrContains(broken.output, "libc.so.6")) << broken.output;
}

}  // namespace
}  // namespace vigil
