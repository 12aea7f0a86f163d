// ControlServiceImpl behind a real in-process gRPC server, over a SqliteStore wrapped in the
// fault-injecting store: a slow whole-chain read (VerifyAudit held back) leaves other calls
// answering, the read queue is bounded (RESOURCE_EXHAUSTED with a retry hint beyond it), a caller
// the token cache does not know yet is looked up off the gRPC threads, and GetIncident pages.
#include "controller/api/control_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/wire_metadata.h"
#include "controller/remediation/policy.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/fault_store.h"
#include "tests/support/process.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    faults_ = std::make_unique<testing::FaultInjectingStore>(store_.get());
    absl::StatusOr<std::string> token = AddUser(*store_, "vera", "viewer", 1);
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *token;
    v1::Incident incident;
    incident.set_id("INC-0001");
    incident.set_title("slow API");
    ASSERT_TRUE(store_->SaveIncident(incident).ok());
    for (int i = 0; i < 30; ++i) {
      v1::TimelineEvent e;
      e.set_incident_id("INC-0001");
      e.set_kind("note");
      e.set_summary(absl::StrCat("note ", i));
      ASSERT_TRUE(store_->AppendEvent(e).ok());
    }
    writer_ = std::make_unique<TimelineWriter>(faults_.get(), &clock_);
    incidents_ = std::make_unique<IncidentManager>(
        writer_.get(), &clock_,
        [](const std::string&, const v1::CollectDiagnostics&) { return true; },
        IncidentManager::Options{});
    ASSERT_TRUE(incidents_->Start().ok());
    auto signer = CommandSigner::LoadOrCreate(dir_.File("k.key"), dir_.File("k.pub"));
    ASSERT_TRUE(signer.ok()) << signer.status();
    remediation_ = std::make_unique<RemediationManager>(
        writer_.get(), incidents_.get(), &clock_, Policy(), std::move(*signer),
        [](const std::string&, v1::Command) { return true; },
        [](const std::string&) -> std::optional<std::vector<std::string>> {
          return std::vector<std::string>{};
        });
    ASSERT_TRUE(remediation_->Start().ok());
    writer_->Start();
  }

  void TearDown() override {
    Release();  // nothing stays held
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      server_->Wait();
    }
    service_.reset();
    writer_->Stop();
  }

  void Serve(ReadPool::Options readers) {
    service_ = std::make_unique<ControlServiceImpl>(&fleet_, faults_.get(), incidents_.get(),
                                                    remediation_.get(), WatchHub::Options{},
                                                    readers);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    target_ = absl::StrCat("127.0.0.1:", port);
    stub_ = v1::ControlService::NewStub(
        grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  }

  void Prepare(grpc::ClientContext& context, absl::Duration deadline = absl::Seconds(5)) {
    context.AddMetadata("authorization", "Bearer " + token_);
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  }

  grpc::Status GetIncident(v1::GetIncidentResponse* response, int page_size = 0,
                           uint64_t after_seq = 0) {
    grpc::ClientContext context;
    Prepare(context);
    v1::GetIncidentRequest request;
    request.set_incident_id("INC-0001");
    request.set_page_size(page_size);
    request.set_after_seq(after_seq);
    return stub_->GetIncident(&context, request, response);
  }

  grpc::Status ListAgents() {
    grpc::ClientContext context;
    Prepare(context);
    v1::ListAgentsResponse response;
    return stub_->ListAgents(&context, v1::ListAgentsRequest(), &response);
  }

  // A VerifyAudit on its own thread; the status lands in `*status`.
  std::thread VerifyInBackground(grpc::Status* status, v1::VerifyAuditResponse* response) {
    return std::thread([this, status, response] {
      grpc::ClientContext context;
      Prepare(context, absl::Seconds(30));
      *status = stub_->VerifyAudit(&context, v1::VerifyAuditRequest(), response);
    });
  }

  void Release() {
    if (!release_.HasBeenNotified()) {
      release_.Notify();
    }
  }

  testing::TempDir dir_;
  SimulatedClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<testing::FaultInjectingStore> faults_;
  std::string token_;
  FleetState fleet_;
  std::string target_;  // the server's address, once served
  std::unique_ptr<TimelineWriter> writer_;
  std::unique_ptr<IncidentManager> incidents_;
  std::unique_ptr<RemediationManager> remediation_;
  std::unique_ptr<ControlServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ControlService::Stub> stub_;
  absl::Notification release_;
};

// A unary call with `token`.
template <typename Request, typename Response>
grpc::Status CallAs(v1::ControlService::Stub* stub, const std::string& token,
                    grpc::Status (v1::ControlService::Stub::*method)(grpc::ClientContext*,
                                                                     const Request&, Response*),
                    const Request& request, Response* response) {
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + token);
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  return (stub->*method)(&context, request, response);
}

TEST_F(ControlServiceTest, UserRpcsAreForAdminsAndTheirChangesCountAtTheNextCall) {
  Serve(ReadPool::Options{});
  absl::StatusOr<std::string> admin = AddUser(*store_, "root", "admin", 1);
  ASSERT_TRUE(admin.ok());
  using Stub = v1::ControlService::Stub;
  v1::ListUsersResponse users;
  v1::UserInfo info;
  v1::RotateUserTokenResponse rotated;
  v1::DisableUserRequest disable;
  disable.set_name("root");
  v1::EnableUserRequest enable;
  enable.set_name("vera");
  v1::RotateUserTokenRequest rotate;
  rotate.set_name("vera");
  // A commander is not enough for any of them.
  absl::StatusOr<std::string> commander = AddUser(*store_, "cora", "commander", 1);
  ASSERT_TRUE(commander.ok());
  for (const grpc::Status& s :
       {CallAs(stub_.get(), *commander, &Stub::ListUsers, v1::ListUsersRequest(), &users),
        CallAs(stub_.get(), *commander, &Stub::DisableUser, disable, &info),
        CallAs(stub_.get(), *commander, &Stub::EnableUser, enable, &info),
        CallAs(stub_.get(), *commander, &Stub::RotateUserToken, rotate, &rotated)}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("needs the admin role"));
  }

  // vera's token is cached (a memory call answered on the gRPC thread) ...
  ASSERT_TRUE(ListAgents().ok());
  ASSERT_TRUE(ListAgents().ok());
  // ... and still refused on the very next call after a rotation.
  grpc::Status s = CallAs(stub_.get(), *admin, &Stub::RotateUserToken, rotate, &rotated);
  ASSERT_TRUE(s.ok()) << s.error_message();
  grpc::Status old_token = ListAgents();
  EXPECT_EQ(old_token.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  token_ = rotated.token();
  ASSERT_TRUE(ListAgents().ok());
  EXPECT_GT(rotated.user().expires_unix_ms(), 0);  // the 90-day default

  v1::DisableUserRequest disable_vera;
  disable_vera.set_name("vera");
  s = CallAs(stub_.get(), *admin, &Stub::DisableUser, disable_vera, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(info.disabled());
  grpc::Status refused = ListAgents();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("user vera is disabled"));

  // An admin cannot lock themselves out here; unknown names are NOT_FOUND.
  s = CallAs(stub_.get(), *admin, &Stub::DisableUser, disable, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  disable.set_name("nobody");
  s = CallAs(stub_.get(), *admin, &Stub::DisableUser, disable, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no user named 'nobody'");
  rotate.set_expires_in("soon");
  s = CallAs(stub_.get(), *admin, &Stub::RotateUserToken, rotate, &rotated);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  s = CallAs(stub_.get(), *admin, &Stub::ListUsers, v1::ListUsersRequest(), &users);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(users.users_size(), 3);
  EXPECT_EQ(users.users(2).name(), "vera");
  EXPECT_TRUE(users.users(2).disabled());
  EXPECT_GT(users.users(2).rotated_unix_ms(), 0);
}

TEST_F(ControlServiceTest, SlowAuditReadsDoNotBlockOtherCalls) {
  Serve(ReadPool::Options{.threads = 2, .max_queued = 16});
  faults_->HoldVerifyChain(&release_);
  grpc::Status first_status, second_status;
  v1::VerifyAuditResponse first, second;
  std::thread a = VerifyInBackground(&first_status, &first);
  ASSERT_TRUE(testing::WaitUntil([&] { return faults_->verify_waiting() == 1; },
                                 absl::Seconds(10)));
  EXPECT_EQ(faults_->verify_thread(), "vigil-reader");  // not a gRPC thread
  // A second whole-chain read waits for the first (heavy reads leave a thread free)...
  std::thread b = VerifyInBackground(&second_status, &second);
  ASSERT_TRUE(testing::WaitUntil([&] { return service_->read_stats().queued == 1; },
                                 absl::Seconds(10)));

  // ...while store reads and memory reads still answer, each well within its deadline.
  for (int i = 0; i < 5; ++i) {
    v1::GetIncidentResponse incident;
    grpc::Status shown = GetIncident(&incident);
    ASSERT_TRUE(shown.ok()) << shown.error_message();
    EXPECT_EQ(incident.timeline_size(), 30);
    grpc::Status agents = ListAgents();
    ASSERT_TRUE(agents.ok()) << agents.error_message();
  }
  EXPECT_EQ(faults_->verify_waiting(), 1);

  Release();
  a.join();
  b.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  ASSERT_TRUE(second_status.ok()) << second_status.error_message();
  EXPECT_TRUE(first.ok());
  EXPECT_EQ(first.events_checked(), 30u);
  EXPECT_EQ(second.events_checked(), 30u);
}

TEST_F(ControlServiceTest, AFullReadQueueIsRefusedWithARetryHint) {
  Serve(ReadPool::Options{.threads = 2, .max_queued = 2});
  faults_->HoldVerifyChain(&release_);
  std::vector<grpc::Status> statuses(3);
  std::vector<v1::VerifyAuditResponse> responses(3);
  std::vector<std::thread> held;
  held.push_back(VerifyInBackground(&statuses[0], &responses[0]));
  ASSERT_TRUE(testing::WaitUntil([&] { return faults_->verify_waiting() == 1; },
                                 absl::Seconds(10)));
  held.push_back(VerifyInBackground(&statuses[1], &responses[1]));
  held.push_back(VerifyInBackground(&statuses[2], &responses[2]));
  ASSERT_TRUE(testing::WaitUntil([&] { return service_->read_stats().queued == 2; },
                                 absl::Seconds(10)));

  // The queue is full: the next store read is refused at once, not held in memory.
  grpc::ClientContext context;
  Prepare(context);
  v1::GetIncidentResponse refused_response;
  v1::GetIncidentRequest request;
  request.set_incident_id("INC-0001");
  grpc::Status refused = stub_->GetIncident(&context, request, &refused_response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("store readers are busy"));
  auto hint = context.GetServerTrailingMetadata().find(std::string(kRetryAfterMsKey));
  ASSERT_NE(hint, context.GetServerTrailingMetadata().end());
  EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "200");
  EXPECT_EQ(service_->read_stats().refused, 1u);
  // Answers from memory need no reader.
  EXPECT_TRUE(ListAgents().ok());

  Release();
  for (std::thread& t : held) {
    t.join();
  }
  for (const grpc::Status& s : statuses) {
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  v1::GetIncidentResponse after;
  EXPECT_TRUE(GetIncident(&after).ok());
}

// ListAgents is served as bytes (FleetState::AppendListing): a typed client reads the rows as it
// always did, and a request that does not parse is refused as the typed method would refuse it.
TEST_F(ControlServiceTest, TheFleetListingIsServedAsBytesAndAGarbledRequestIsRefused) {
  Serve(ReadPool::Options{.threads = 2, .max_queued = 16});
  v1::Hello hello;
  hello.set_agent_id("web-1");
  hello.set_hostname("web-1.example");
  (*hello.mutable_labels())["role"] = "api";
  hello.add_collectors("nginx");
  ASSERT_TRUE(fleet_.Connect(hello, "ipv4:127.0.0.1:9", 1, absl::Now()).ok());
  grpc::ClientContext context;
  Prepare(context);
  v1::ListAgentsResponse response;
  ASSERT_TRUE(stub_->ListAgents(&context, v1::ListAgentsRequest(), &response).ok());
  ASSERT_EQ(response.agents_size(), 1);
  EXPECT_EQ(response.agents(0).agent_id(), "web-1");
  EXPECT_EQ(response.agents(0).hostname(), "web-1.example");
  EXPECT_EQ(response.agents(0).labels().at("role"), "api");
  EXPECT_EQ(response.agents(0).collectors(0), "nginx");
  EXPECT_EQ(response.agents(0).state(), v1::CONNECTED);
  EXPECT_EQ(response.agents(0).cpu_usage_ratio(), -1) << "no CPU sample yet";

  grpc::GenericStub generic(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext raw;
  Prepare(raw);
  const std::string garbage("\x0a\xff\xff\xff\x0f", 5);  // field 1 with a length past the end
  grpc::Slice slice(garbage);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer answer;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&raw, "/vigil.v1.ControlService/ListAgents", grpc::StubOptions(), &request,
                    &answer, [&](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("ListAgentsRequest"));
}

TEST_F(ControlServiceTest, UnknownAndNewTokensAreJudgedOnTheReaders) {
  Serve(ReadPool::Options{.threads = 2, .max_queued = 16});
  // A memory-only call from a caller not cached yet still reads the store, off the gRPC thread.
  EXPECT_TRUE(ListAgents().ok());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer vgt_nobody");
  v1::ListAgentsResponse response;
  grpc::Status unknown = stub_->ListAgents(&context, v1::ListAgentsRequest(), &response);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(unknown.error_message(), HasSubstr("unknown token"));
  grpc::ClientContext none;
  grpc::Status missing = stub_->ListAgents(&none, v1::ListAgentsRequest(), &response);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Three calls, two needed the store (the first of a token, the unknown one); the one without
  // a token was refused on the spot.
  EXPECT_TRUE(testing::WaitUntil([&] { return service_->read_stats().done == 2; },
                                 absl::Seconds(10)))
      << service_->read_stats().done;
}

TEST_F(ControlServiceTest, GetIncidentPagesAndRefusesABadPageSizeByName) {
  Serve(ReadPool::Options{});
  std::vector<uint64_t> seqs;
  uint64_t after = 0;
  for (int pages = 1;; ++pages) {
    ASSERT_LE(pages, 4);
    v1::GetIncidentResponse page;
    grpc::Status status = GetIncident(&page, 12, after);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const v1::TimelineEvent& e : page.timeline()) {
      seqs.push_back(e.seq());
    }
    if (!page.has_next_after_seq()) {
      EXPECT_EQ(pages, 3);
      break;
    }
    after = page.next_after_seq();
  }
  ASSERT_EQ(seqs.size(), 30u);
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i], i + 1);
  }

  v1::GetIncidentResponse bad;
  grpc::Status refused = GetIncident(&bad, -5);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("page_size -5"));
  refused = GetIncident(&bad, 10'001);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("page_size 10001"));
}

TEST_F(ControlServiceTest, ExportRendersTheChainCheckAndRefusesAnUnknownFormat) {
  Serve(ReadPool::Options{});
  v1::ExportIncidentRequest request;
  request.set_incident_id("INC-0001");  // no format: markdown
  v1::ExportIncidentResponse response;
  grpc::Status status =
      CallAs(stub_.get(), token_, &v1::ControlService::Stub::ExportIncident, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.content(), HasSubstr("# INC-0001: slow API"));
  EXPECT_THAT(response.content(), HasSubstr("| 30 | "));
  EXPECT_THAT(response.content(), HasSubstr("The audit chain verifies: 30 events checked"));
  EXPECT_THAT(response.content(), HasSubstr("| Chain head | #30 "));  // the caller's check
  request.set_format("pdf");
  status =
      CallAs(stub_.get(), token_, &v1::ControlService::Stub::ExportIncident, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("'pdf' is not one of: markdown, json, bundle"));
}

TEST_F(ControlServiceTest, WatchAdmitsATokenNotCachedYetOffTheGrpcThread) {
  Serve(ReadPool::Options{});
  // A fresh service has no token cached: the hub's reader checks it before the stream starts.
  grpc::ClientContext context;
  Prepare(context);
  v1::WatchRequest request;
  request.set_incident_id("INC-0001");
  std::unique_ptr<grpc::ClientReader<v1::TimelineEvent>> reader = stub_->Watch(&context, request);
  for (uint64_t seq = 1; seq <= 30; ++seq) {
    v1::TimelineEvent event;
    ASSERT_TRUE(reader->Read(&event)) << seq;
    EXPECT_EQ(event.seq(), seq);
  }
  context.TryCancel();
  reader->Finish();  // CANCELLED: it was us

  grpc::ClientContext stranger;
  stranger.AddMetadata("authorization", "Bearer vgt_nobody");
  stranger.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  std::unique_ptr<grpc::ClientReader<v1::TimelineEvent>> refused =
      stub_->Watch(&stranger, request);
  v1::TimelineEvent event;
  EXPECT_FALSE(refused->Read(&event));
  grpc::Status status = refused->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("unknown token"));
}

TEST_F(ControlServiceTest, ChangesAreAuthorizedThenHandedToTheirWorker) {
  Serve(ReadPool::Options{});
  absl::StatusOr<std::string> responder = AddUser(*store_, "rita", "responder", 1);
  ASSERT_TRUE(responder.ok()) << responder.status();
  v1::UpdateIncidentRequest note;
  note.set_incident_id("INC-0001");
  note.set_operation(v1::UpdateIncidentRequest::NOTE);
  note.set_text("looking");
  // A viewer may not; the refusal names the role needed.
  {
    grpc::ClientContext context;
    Prepare(context);
    v1::Incident incident;
    grpc::Status refused = stub_->UpdateIncident(&context, note, &incident);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(refused.error_message(), HasSubstr("needs the responder role"));
  }
  // A responder not cached yet (looked up on a reader), then cached (on the gRPC thread).
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + *responder);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::Incident incident;
    grpc::Status status = stub_->UpdateIncident(&context, note, &incident);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(incident.id(), "INC-0001");
  }
  v1::GetIncidentResponse shown;
  ASSERT_TRUE(GetIncident(&shown).ok());
  int notes = 0;
  for (const v1::TimelineEvent& e : shown.timeline()) {
    notes += absl::StrContains(e.summary(), "looking") ? 1 : 0;
  }
  EXPECT_EQ(notes, 2);
}

}  // namespace
}  // namespace vigil::controller
