// Plain text is for loopback only, and loopback is decided by parsing the address: the table
// below holds what people type, what gRPC accepts, and names built to look local.
#include "common/transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace vigil {
namespace {

using ::testing::HasSubstr;

struct AddressCase {
  const char* address;
  bool loopback;
};

constexpr AddressCase kAddresses[] = {
    // Literal loopback addresses, with and without a port.
    {"127.0.0.1:7443", true},
    {"127.0.0.1", true},
    {"127.5.6.7:1", true},
    {"127.255.255.255:65535", true},
    {"127.0.0.1:0", true},
    {"[::1]:7443", true},
    {"[::1]", true},
    {"::1", true},
    {"[0:0:0:0:0:0:0:1]:7443", true},
    {"localhost:7443", true},
    {"localhost", true},
    {"LocalHost:7443", true},
    // gRPC's schemes for one address, and the local resolver.
    {"ipv4:127.0.0.1:7443", true},
    {"ipv6:[::1]:7443", true},
    {"dns:///localhost:7443", true},
    // Names that merely start like loopback.
    {"127.attacker.example:7443", false},
    {"127.attacker.example", false},
    {"127.0.0.1.nip.io:7443", false},
    {"127.0.0.1.nip.io", false},
    {"localhost.evil:7443", false},
    {"localhost.evil", false},
    {"localhost.:7443", false},
    {"localhostx:7443", false},
    {"127.0.0.1x:7443", false},
    // Short and hexadecimal IPv4 forms a resolver might widen.
    {"0x7f.1:1", false},
    {"0x7f000001:1", false},
    {"127.1:1", false},
    {"2130706433:1", false},
    {"0177.0.0.1:1", false},
    // Other addresses.
    {"128.0.0.1:7443", false},
    {"126.255.255.255:7443", false},
    {"192.0.2.1:7443", false},
    {"0.0.0.0:7443", false},
    {"[::]:7443", false},
    {"[::2]:7443", false},
    {"::ffff:127.0.0.1", false},
    {"[::1%lo]:7443", false},
    {"example.com:7443", false},
    // Malformed: ports, brackets, lists, other schemes.
    {"", false},
    {":7443", false},
    {"127.0.0.1:", false},
    {"127.0.0.1:http", false},
    {"127.0.0.1:65536", false},
    {"127.0.0.1:7443:1", false},
    {"127.0.0.1:-1", false},
    {"127.0.0.1 :7443", false},
    {"[::1]7443", false},
    {"[::1:7443", false},
    {"[127.0.0.1]:7443", false},
    {"ipv4:127.0.0.1:1,192.0.2.1:2", false},
    {"dns://192.0.2.53/localhost:7443", false},
    {"unix:/run/vigil.sock", false},
    {"unix:localhost", false},
    {"http://127.0.0.1:7443", false},
};

TEST(TransportTest, LoopbackIsDecidedByParsingTheAddress) {
  for (const AddressCase& c : kAddresses) {
    EXPECT_EQ(IsLoopbackAddress(c.address), c.loopback) << "address '" << c.address << "'";
  }
  // Embedded NUL: the parse must not stop where a C string would.
  EXPECT_FALSE(IsLoopbackAddress(std::string("127.0.0.1\0.evil:1", 17)));
}

TEST(TransportTest, InsecureClientIsRefusedOffLoopback) {
  TransportFlags flags;
  flags.insecure = true;
  EXPECT_TRUE(MakeClientCredentials(flags, "127.0.0.1:7443").ok());
  EXPECT_TRUE(MakeClientCredentials(flags, "[::1]:7443").ok());
  auto refused = MakeClientCredentials(flags, "127.attacker.example:7443");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("--insecure is refused for 127.attacker.example:7443"));
}

TEST(TransportTest, InsecureServerIsRefusedOffLoopback) {
  TransportFlags flags;
  flags.insecure = true;
  EXPECT_TRUE(MakeServerCredentials(flags, "127.0.0.1:0").ok());
  for (const char* address : {"0.0.0.0:7443", "127.0.0.1.nip.io:7443", "localhost.evil:7443"}) {
    auto refused = MakeServerCredentials(flags, address);
    ASSERT_FALSE(refused.ok()) << address;
    EXPECT_THAT(refused.status().message(), HasSubstr("loopback only")) << address;
  }
}

}  // namespace
}  // namespace vigil
