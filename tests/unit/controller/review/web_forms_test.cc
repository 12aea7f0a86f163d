// HTML escaping, form and query parsing with their limits, the Cookie header, peer addresses.
#include "controller/review/web_forms.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace vigil::controller::review {
namespace {

TEST(WebForms, HtmlEscapeLeavesNoMarkupOrAttributeBreakout) {
  EXPECT_EQ(HtmlEscape(R"(<script>alert("x")</script>)"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
  EXPECT_EQ(HtmlEscape("' onmouseover='x"), "&#39; onmouseover=&#39;x");
  EXPECT_EQ(HtmlEscape("a & b"), "a &amp; b");
  EXPECT_EQ(HtmlEscape("&lt;"), "&amp;lt;");  // already escaped text stays text
  EXPECT_EQ(HtmlEscape("caf\xc3\xa9 \x01"), "caf\xc3\xa9 \x01");
  const std::string escaped = HtmlEscape("\"><img src=x onerror=alert(1)>");
  EXPECT_EQ(escaped.find('<'), std::string::npos);
  EXPECT_EQ(escaped.find('>'), std::string::npos);
  EXPECT_EQ(escaped.find('"'), std::string::npos);
}

TEST(WebForms, UrlEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(UrlEncode("INC-1_a.b~"), "INC-1_a.b~");
  EXPECT_EQ(UrlEncode("a b&c=\"<"), "a%20b%26c%3D%22%3C");
}

TEST(WebForms, ParsesFormsAndQueries) {
  auto form = ParseForm("token=vgt_abc%2B1&state=open&text=a+b%21&empty&token=second");
  ASSERT_TRUE(form.ok()) << form.status();
  EXPECT_EQ((*form)["token"], "vgt_abc+1");  // the first of a repeated name
  EXPECT_EQ((*form)["state"], "open");
  EXPECT_EQ((*form)["text"], "a b!");
  EXPECT_EQ((*form)["empty"], "");
  EXPECT_TRUE(ParseForm("").ok());
  EXPECT_TRUE(ParseForm("&&").value().empty());
}

TEST(WebForms, RefusesMalformedAndOversizedForms) {
  EXPECT_FALSE(ParseForm("a=%").ok());
  EXPECT_FALSE(ParseForm("a=%4").ok());
  EXPECT_FALSE(ParseForm("a=%zz").ok());
  EXPECT_FALSE(ParseForm("%g1=1").ok());
  std::string many;
  for (size_t i = 0; i <= kMaxFormFields; ++i) {
    absl::StrAppend(&many, "f", i, "=1&");
  }
  auto too_many = ParseForm(many);
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("fields"), absl::string_view::npos);
  EXPECT_FALSE(ParseForm(std::string(kMaxFormBytes + 1, 'a')).ok());
}

TEST(WebForms, FindsCookiesByExactName) {
  EXPECT_EQ(CookieValue("a=1; vigil_review=abc; b=2", "vigil_review"), "abc");
  EXPECT_EQ(CookieValue("vigil_review=x", "vigil_review"), "x");
  EXPECT_EQ(CookieValue("xvigil_review=1; vigil_reviewer=2", "vigil_review"), std::nullopt);
  EXPECT_EQ(CookieValue("", "vigil_review"), std::nullopt);
}

TEST(WebForms, PeerAddressDropsThePort) {
  EXPECT_EQ(PeerAddress("127.0.0.1:5555"), "127.0.0.1");
  EXPECT_EQ(PeerAddress("[::1]:5555"), "::1");
  EXPECT_EQ(PeerAddress("::1"), "::1");
  EXPECT_EQ(PeerAddress("10.0.0.1"), "10.0.0.1");
}

}  // namespace
}  // namespace vigil::controller::review
