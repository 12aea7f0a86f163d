// GetIncident by pages over a real SqliteStore in a temp dir: page boundaries, the cursor, an
// empty timeline, a cursor past the end, the size cap, and refusals that name the field.
#include "controller/api/incident_pages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

class IncidentPagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    for (const char* id : {"INC-0001", "INC-0002", "INC-EMPTY"}) {
      v1::Incident incident;
      incident.set_id(id);
      incident.set_title(absl::StrCat("title of ", id));
      ASSERT_TRUE(store_->SaveIncident(incident).ok());
    }
    v1::Alert alert;
    alert.set_id("al-1");
    alert.set_incident_id("INC-0001");
    ASSERT_TRUE(store_->SaveAlert(alert).ok());
    v1::ActionProposal proposal;
    proposal.set_id("act-1");
    proposal.set_incident_id("INC-0001");
    ASSERT_TRUE(store_->SaveProposal(proposal).ok());
  }

  // Appends `n` events of `incident`, interleaved with one of another incident each.
  std::vector<uint64_t> Append(int n, const std::string& incident,
                               size_t summary_bytes = 20) {
    std::vector<uint64_t> seqs;
    for (int i = 0; i < n; ++i) {
      v1::TimelineEvent e;
      e.set_incident_id(incident);
      e.set_kind("note");
      e.set_summary(std::string(summary_bytes, 'x'));
      auto stored = store_->AppendEvent(e);
      EXPECT_TRUE(stored.ok()) << stored.status();
      seqs.push_back(stored->seq());
      v1::TimelineEvent other = e;
      other.set_incident_id("INC-0002");
      EXPECT_TRUE(store_->AppendEvent(other).ok());
    }
    return seqs;
  }

  absl::StatusOr<v1::GetIncidentResponse> Page(const std::string& id, int page_size,
                                               uint64_t after_seq) {
    v1::GetIncidentRequest request;
    request.set_incident_id(id);
    request.set_page_size(page_size);
    request.set_after_seq(after_seq);
    return LoadIncidentPage(*store_, request);
  }

  static std::vector<uint64_t> Seqs(const v1::GetIncidentResponse& page) {
    std::vector<uint64_t> out;
    for (const v1::TimelineEvent& e : page.timeline()) {
      out.push_back(e.seq());
    }
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
};

TEST_F(IncidentPagesTest, PagesCoverTheTimelineOnceInOrderWithTheCursor) {
  const std::vector<uint64_t> all = Append(25, "INC-0001");
  std::vector<uint64_t> seen;
  uint64_t after = 0;
  int pages = 0;
  while (true) {
    auto page = Page("INC-0001", 10, after);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    EXPECT_EQ(page->incident().id(), "INC-0001");
    // Alerts and actions come with the first page only.
    EXPECT_EQ(page->alerts_size(), after == 0 ? 1 : 0);
    EXPECT_EQ(page->actions_size(), after == 0 ? 1 : 0);
    for (uint64_t seq : Seqs(*page)) {
      seen.push_back(seq);
    }
    if (!page->has_next_after_seq()) {
      EXPECT_EQ(page->timeline_size(), 5);
      break;
    }
    EXPECT_EQ(page->timeline_size(), 10);
    EXPECT_EQ(page->next_after_seq(), page->timeline(9).seq());
    after = page->next_after_seq();
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, all);
}

TEST_F(IncidentPagesTest, AFullLastPageSaysNoMoreFollow) {
  const std::vector<uint64_t> all = Append(10, "INC-0001");
  auto page = Page("INC-0001", 10, 0);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Seqs(*page), all);
  EXPECT_FALSE(page->has_next_after_seq());
}

TEST_F(IncidentPagesTest, EmptyTimelineAndCursorPastTheEndGiveNoEvents) {
  Append(3, "INC-0001");
  auto empty = Page("INC-EMPTY", 0, 0);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->incident().title(), "title of INC-EMPTY");
  EXPECT_EQ(empty->timeline_size(), 0);
  EXPECT_FALSE(empty->has_next_after_seq());

  auto past = Page("INC-0001", 10, 1'000'000);
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_EQ(past->incident().id(), "INC-0001");
  EXPECT_EQ(past->timeline_size(), 0);
  EXPECT_FALSE(past->has_next_after_seq());
}

TEST_F(IncidentPagesTest, DefaultPageIsBounded) {
  Append(kDefaultIncidentPageSize + 1, "INC-0001", 1);
  auto page = Page("INC-0001", 0, 0);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->timeline_size(), kDefaultIncidentPageSize);
  ASSERT_TRUE(page->has_next_after_seq());
  auto rest = Page("INC-0001", 0, page->next_after_seq());
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->timeline_size(), 1);
  EXPECT_FALSE(rest->has_next_after_seq());
}

TEST_F(IncidentPagesTest, LargeEventsEndAPageEarlyButNeverLeaveItEmpty) {
  // 600 KiB each: three fit under the byte cap, the fourth starts the next page.
  const size_t big = 600u << 10;
  const std::vector<uint64_t> all = Append(5, "INC-0001", big);
  auto first = Page("INC-0001", 100, 0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->timeline_size(), 3);
  ASSERT_TRUE(first->has_next_after_seq());
  EXPECT_EQ(first->next_after_seq(), all[2]);
  EXPECT_LE(first->ByteSizeLong(), kMaxIncidentPageBytes + (64u << 10));

  // One event larger than the cap still comes, alone.
  const std::vector<uint64_t> huge = Append(2, "INC-EMPTY", kMaxIncidentPageBytes + 1);
  auto alone = Page("INC-EMPTY", 100, 0);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(Seqs(*alone), std::vector<uint64_t>{huge[0]});
  EXPECT_EQ(alone->next_after_seq(), huge[0]);
}

TEST_F(IncidentPagesTest, BadRequestsNameTheField) {
  for (int bad : {-1, kMaxIncidentPageSize + 1, std::numeric_limits<int>::max()}) {
    auto page = Page("INC-0001", bad, 0);
    ASSERT_FALSE(page.ok()) << bad;
    EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(page.status().message()), HasSubstr(absl::StrCat("page_size ", bad)));
  }
  EXPECT_TRUE(Page("INC-0001", kMaxIncidentPageSize, 0).ok());

  auto cursor = Page("INC-0001", 10, std::numeric_limits<uint64_t>::max());
  ASSERT_FALSE(cursor.ok());
  EXPECT_EQ(cursor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cursor.status().message()), HasSubstr("after_seq"));

  auto no_id = Page("", 10, 0);
  EXPECT_EQ(no_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_id.status().message()), HasSubstr("incident_id"));
  auto long_id = Page(std::string(300, 'x'), 10, 0);
  EXPECT_EQ(long_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(long_id.status().message()), HasSubstr("incident_id"));

  auto missing = Page("INC-9999", 10, 0);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("INC-9999"));
}

}  // namespace
}  // namespace vigil::controller
