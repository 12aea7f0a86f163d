#include "bench/loadgen/proc_usage.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace vigil::loadgen {
namespace {

TEST(ParseProcStatTest, CountsFieldsFromTheLastParenthesis) {
  // A command name with spaces and parentheses must not shift the fields.
  const char* stat =
      "4242 (vigil (x) ctl) S 1 4242 4242 0 -1 4194560 2000 0 0 0 731 129 0 0 20 0 9 0 "
      "12345 1000000 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  absl::StatusOr<ProcCpu> cpu = ParseProcStat(stat);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->user_ticks, 731u);
  EXPECT_EQ(cpu->system_ticks, 129u);
  EXPECT_EQ(cpu->total(), 860u);
}

TEST(ParseProcStatTest, RefusesTruncatedOrGarbledText) {
  EXPECT_FALSE(ParseProcStat("").ok());
  EXPECT_FALSE(ParseProcStat("4242 vigil S 1 2 3").ok());
  EXPECT_FALSE(ParseProcStat("4242 (vigil) S 1 4242 4242 0 -1 4194560 2000 0 0").ok());
  absl::StatusOr<ProcCpu> bad =
      ParseProcStat("1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 129 0 0 20 0 9 0 1 1 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("utime"), std::string::npos) << bad.status();
}

TEST(ParseProcStatusTest, ReadsRssAndPeak) {
  const char* status =
      "Name:\tvigil-controller\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\n"
      "VmRSS:\t  102400 kB\nThreads:\t9\n";
  absl::StatusOr<ProcMemory> memory = ParseProcStatus(status);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(memory->rss_kb, 102400u);
  EXPECT_EQ(memory->peak_kb, 204800u);
}

TEST(ParseProcStatusTest, RefusesMissingOrBadRss) {
  EXPECT_FALSE(ParseProcStatus("Name:\tkthreadd\nState:\tS\n").ok());
  EXPECT_FALSE(ParseProcStatus("VmRSS:\t  lots kB\n").ok());
}

TEST(ParseSchedstatTest, TakesTheWaitField) {
  absl::StatusOr<uint64_t> wait = ParseSchedstatWaitNs("4001750380 36588393096 2533\n");
  ASSERT_TRUE(wait.ok()) << wait.status();
  EXPECT_EQ(*wait, 36588393096u);
  EXPECT_FALSE(ParseSchedstatWaitNs("").ok());
  EXPECT_FALSE(ParseSchedstatWaitNs("12 x 3").ok());
  EXPECT_FALSE(ParseSchedstatWaitNs("12 13").ok());
}

TEST(ReadProcTest, ReadsThisProcess) {
  absl::StatusOr<ProcCpu> cpu = ReadProcCpu(getpid());
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<ProcMemory> memory = ReadProcMemory(getpid());
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_GT(memory->rss_kb, 0u);
  EXPECT_GE(memory->peak_kb, memory->rss_kb);
  EXPECT_TRUE(ReadProcWaitNs(getpid()).ok());
  EXPECT_EQ(ReadProcCpu(-5).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadProcWaitNs(-5).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vigil::loadgen
