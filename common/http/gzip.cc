#include "common/http/gzip.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vigil::http {

bool AcceptsGzip(absl::string_view accept_encoding) {
  for (absl::string_view item : absl::StrSplit(accept_encoding, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ';');
    const absl::string_view coding = absl::StripAsciiWhitespace(parts[0]);
    if (!absl::EqualsIgnoreCase(coding, "gzip") && coding != "*") {
      continue;
    }
    bool refused = false;
    for (size_t i = 1; i < parts.size(); ++i) {
      const absl::string_view param = absl::StripAsciiWhitespace(parts[i]);
      double q = 1;
      if (absl::StartsWithIgnoreCase(param, "q=") && absl::SimpleAtod(param.substr(2), &q) &&
          q <= 0) {
        refused = true;
      }
    }
    if (!refused) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> GzipCompress(absl::string_view data, int level) {
  z_stream stream{};
  // 15 window bits + 16: a gzip header and trailer rather than zlib's.
  if (deflateInit2(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::ResourceExhaustedError("gzip: deflateInit2 failed");
  }
  std::string out;
  // Text compresses about tenfold: start at an eighth and grow, rather than reserve the bound
  // (the whole input again) beside a page that may be hundreds of megabytes.
  out.resize(data.size() / 8 + 4096);
  size_t produced = 0;
  int rc = Z_OK;
  size_t consumed = 0;
  // uInt is 32 bits: feed at most 1 GiB at a time.
  constexpr size_t kChunk = size_t{1} << 30;
  while (rc != Z_STREAM_END) {
    if (stream.avail_in == 0 && consumed < data.size()) {
      const size_t n = std::min(kChunk, data.size() - consumed);
      stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + consumed));
      stream.avail_in = static_cast<uInt>(n);
      consumed += n;
    }
    if (produced == out.size()) {
      out.resize(out.size() + out.size() / 2 + 4096);
    }
    const size_t room = std::min(out.size() - produced, size_t{std::numeric_limits<uInt>::max()});
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    stream.avail_out = static_cast<uInt>(room);
    rc = deflate(&stream, consumed == data.size() ? Z_FINISH : Z_NO_FLUSH);
    produced += room - stream.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      deflateEnd(&stream);
      return absl::InternalError(absl::StrCat("gzip: deflate failed (", rc, ")"));
    }
  }
  deflateEnd(&stream);
  out.resize(produced);
  return out;
}

void MaybeGzip(const HttpRequest& request, HttpResponse& response) {
  response.headers.emplace_back("Vary", "Accept-Encoding");
  if (response.status != 200 || response.body.size() < 1024 ||
      !AcceptsGzip(request.Header("accept-encoding"))) {
    return;
  }
  absl::StatusOr<std::string> compressed = GzipCompress(response.body);
  if (!compressed.ok()) {
    return;
  }
  response.body = *std::move(compressed);
  response.headers.emplace_back("Content-Encoding", "gzip");
}

}  // namespace vigil::http
