// What the daemons write is theirs alone: the controller's data folder, database with its -wal
// and -shm files and signing key, and the agent's state folder, checked on the real binaries
// started from a permissive umask.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::Subprocess;
using testing::WaitUntil;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(FileModes, ControllerAndAgentFilesAreOwnerOnly) {
  const mode_t old_mask = umask(022);  // the children inherit it
  testing::TempDir dir;
  Subprocess controller({BinaryPath("vigil-controller"), "--listen=127.0.0.1:0",
                         "--http-listen=off", "--db=" + dir.File("data/vigil.db"), "--insecure"},
                        std::map<std::string, std::string>{}, dir.File("controller.log"));
  testing::WriteFile(dir.File("agent.yaml"),
                     absl::StrCat("collectors:\n  host: {}\njournal: ",
                                  dir.File("agent-state/web-1.journal"), "\n"));
  Subprocess agent({BinaryPath("vigil-agent"), "--controller=127.0.0.1:1",
                    "--config=" + dir.File("agent.yaml"), "--id=web-1", "--insecure"},
                   std::map<std::string, std::string>{}, dir.File("agent.log"));
  umask(old_mask);

  const std::string data = dir.File("data");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Exists(data + "/vigil.db-wal") && Exists(data + "/vigil.db-shm") &&
               Exists(data + "/controller-signing.key") &&
               Exists(data + "/controller-signing.pub");
      },
      absl::Seconds(15)))
      << controller.Output();
  for (const std::string& path : {data, data + "/vigil.db", data + "/vigil.db-wal",
                                  data + "/vigil.db-shm", data + "/controller-signing.key"}) {
    EXPECT_EQ(ModeOf(path) & 077, 0u) << path << " mode " << std::oct << ModeOf(path);
  }
  // The public half is for the agents.
  EXPECT_EQ(ModeOf(data + "/controller-signing.pub"), 0644u);

  ASSERT_TRUE(WaitUntil([&] { return Exists(dir.File("agent-state")); }, absl::Seconds(15)))
      << agent.Output();
  EXPECT_EQ(ModeOf(dir.File("agent-state")) & 077, 0u)
      << "mode " << std::oct << ModeOf(dir.File("agent-state"));
  EXPECT_TRUE(controller.Running());
  EXPECT_TRUE(agent.Running()) << agent.Output();
}

}  // namespace
}  // namespace vigil
