// HttpFetch: a non-blocking socket driven by poll() against the call's deadlines, OpenSSL on top
// for https; the response is read to the server's close (we send `Connection: close`) or to its
// Content-Length, and parsed by the pure functions below.
#include "common/http/http_client.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/http/error_text.h"

namespace vigil::http {
namespace {

// What a TLS failure with no OpenSSL error queued means here: the peer went away.
constexpr char kPeerClosed[] = "connection closed";

// Waits until `fd` is ready for `events` or the deadline passes; false on the deadline.
bool WaitFor(int fd, short events, absl::Time deadline) {
  while (true) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return false;
    }
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(left))));
    if (n > 0) {
      return true;
    }
    if (n < 0 && errno != EINTR) {
      return true;  // let the next call report the error
    }
  }
}

// Blocks SIGPIPE in this thread for the guard's life (SSL_write cannot pass MSG_NOSIGNAL), and
// swallows one raised meanwhile, so a server that hangs up is an error, not the process's end.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    already_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!already_pending_) {
      timespec zero{0, 0};
      sigtimedwait(&pipe_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool already_pending_ = false;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) {
      close(fd);
    }
  }
};

struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};

struct AddrInfoFree {
  void operator()(addrinfo* addrs) const { freeaddrinfo(addrs); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoFree>;

// One name lookup on a thread of its own, shared with the caller, who may give up on it: the
// last owner frees what it found.
struct PendingLookup {
  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  int gai ABSL_GUARDED_BY(mu) = 0;
  AddrInfoPtr addrs ABSL_GUARDED_BY(mu);
};

// Lookups abandoned at their deadline keep a thread each until the resolver answers (resolv.conf's
// timeout x attempts x servers): past this many at once, new ones fail at once rather than pile up.
constexpr int kMaxLookupsInFlight = 16;
std::atomic<int> lookups_in_flight{0};

// getaddrinfo has no deadline of its own. A literal address needs no lookup; a name is looked up
// on a detached thread, waited for until `deadline` and abandoned after it.
absl::StatusOr<AddrInfoPtr> Resolve(const ParsedUrl& url, absl::Time deadline,
                                    const HttpClientOptions& options, const std::string& where) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  const std::string port = std::to_string(url.port);
  auto lookup = options.address_lookup
                    ? options.address_lookup
                    : std::function<int(const char*, const char*, const addrinfo*, addrinfo**)>(
                          getaddrinfo);
  addrinfo numeric = hints;
  numeric.ai_flags |= AI_NUMERICHOST;
  addrinfo* found = nullptr;
  if (getaddrinfo(url.host.c_str(), port.c_str(), &numeric, &found) == 0) {
    return AddrInfoPtr(found);
  }
  if (lookups_in_flight.fetch_add(1) >= kMaxLookupsInFlight) {
    lookups_in_flight.fetch_sub(1);
    return absl::UnavailableError(absl::StrCat(where, ": cannot resolve ", url.host, ": ",
                                               kMaxLookupsInFlight,
                                               " earlier lookups still unanswered"));
  }
  auto pending = std::make_shared<PendingLookup>();
  try {
    std::thread([pending, lookup, host = url.host, port, hints] {
      addrinfo* result = nullptr;
      const int gai = lookup(host.c_str(), port.c_str(), &hints, &result);
      lookups_in_flight.fetch_sub(1);
      absl::MutexLock lock(&pending->mu);
      pending->gai = gai;
      pending->addrs.reset(gai == 0 ? result : nullptr);
      pending->done = true;
    }).detach();
  } catch (const std::system_error& e) {
    lookups_in_flight.fetch_sub(1);
    return absl::UnavailableError(
        absl::StrCat(where, ": cannot start a name lookup for ", url.host, ": ", e.what()));
  }
  absl::MutexLock lock(&pending->mu);
  if (!pending->mu.AwaitWithDeadline(absl::Condition(&pending->done), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat(where, ": cannot connect: name lookup of ", url.host, " timed out"));
  }
  if (pending->gai != 0) {
    return absl::UnavailableError(absl::StrCat(where, ": ", gai_strerror(pending->gai)));
  }
  return std::move(pending->addrs);
}

absl::StatusOr<int> Connect(const ParsedUrl& url, absl::Time connect_deadline,
                            const HttpClientOptions& options, const std::string& where) {
  absl::StatusOr<AddrInfoPtr> resolved = Resolve(url, connect_deadline, options, where);
  if (!resolved.ok()) {
    return resolved.status();
  }
  addrinfo* addrs = resolved->get();
  std::string failure = "no address";
  bool timed_out = false;
  int fd = -1;
  for (addrinfo* ai = addrs; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      failure = ErrnoText(errno);
      continue;
    }
    int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      if (!WaitFor(fd, POLLOUT, connect_deadline)) {
        timed_out = true;
        failure = "connect timed out";
      } else {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        r = err == 0 ? 0 : -1;
        errno = err;
      }
    }
    if (r != 0) {
      if (!timed_out) {
        failure = ErrnoText(errno);
      }
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) {
    std::string message = absl::StrCat(where, ": cannot connect: ", failure);
    return timed_out ? absl::DeadlineExceededError(message) : absl::UnavailableError(message);
  }
  return fd;
}

absl::StatusOr<int> ConnectUnix(const std::string& path, absl::Time connect_deadline,
                                const std::string& where) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": unix socket path \"", path, "\" is empty or too long"));
  }
  path.copy(addr.sun_path, path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(where, ": socket: ", ErrnoText(errno)));
  }
  int r = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  if (r != 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
    // A full backlog: wait for room, bounded by the connect deadline.
    if (!WaitFor(fd, POLLOUT, connect_deadline)) {
      close(fd);
      return absl::DeadlineExceededError(
          absl::StrCat(where, ": cannot connect to unix:", path, ": connect timed out"));
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    r = err == 0 ? 0 : -1;
    errno = err;
  }
  if (r != 0) {
    const std::string why = ErrnoText(errno);
    close(fd);
    return absl::UnavailableError(
        absl::StrCat(where, ": cannot connect to unix:", path, ": ", why));
  }
  return fd;
}

}  // namespace

absl::StatusOr<ParsedUrl> ParseHttpUrl(absl::string_view url) {
  ParsedUrl out;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "https://")) {
    out.tls = true;
  } else if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrFormat("URL \"%s\" does not start with http:// or https://", url));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  out.target = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.empty() || absl::StrContains(authority, '@')) {
    return absl::InvalidArgumentError(absl::StrFormat("URL \"%s\" has no usable host", url));
  }
  absl::string_view port_text;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat("URL \"%s\": unclosed '['", url));
    }
    out.host = std::string(authority.substr(1, close - 1));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return absl::InvalidArgumentError(absl::StrFormat("URL \"%s\": bad port", url));
    }
    port_text = after;
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) {
      port_text = authority.substr(colon + 1);
    }
  }
  out.port = out.tls ? 443 : 80;
  if (!port_text.empty() &&
      (!std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit) ||
       !absl::SimpleAtoi(port_text, &out.port) || out.port < 1 || out.port > 65535)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("URL \"%s\": port \"%s\" is not 1-65535", url, port_text));
  }
  for (char c : out.host + out.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrFormat("URL \"%s\" holds a space or control character", absl::CHexEscape(url)));
    }
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("URL \"%s\" has no host", url));
  }
  return out;
}

absl::StatusOr<std::string> DecodeChunked(absl::string_view chunked) {
  std::string out;
  while (true) {
    size_t eol = chunked.find("\r\n");
    if (eol == absl::string_view::npos) {
      return absl::InvalidArgumentError("chunked body ends inside a chunk size line");
    }
    absl::string_view size_text = chunked.substr(0, eol);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    size_text = absl::StripAsciiWhitespace(size_text);
    uint64_t size = 0;
    if (size_text.empty() || size_text.size() > 15 || !absl::SimpleHexAtoi(size_text, &size)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("chunk size \"%s\" is not hexadecimal", absl::CHexEscape(size_text)));
    }
    chunked.remove_prefix(eol + 2);
    if (size == 0) {
      return out;  // trailers, if any, are ignored
    }
    if (chunked.size() < size + 2 || chunked.substr(size, 2) != "\r\n") {
      return absl::InvalidArgumentError("chunked body is truncated");
    }
    out.append(chunked.data(), size);
    chunked.remove_prefix(size + 2);
  }
}

absl::StatusOr<HttpClientResponse> ParseHttpResponse(absl::string_view raw) {
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == absl::string_view::npos) {
    return absl::UnavailableError("the answer has no complete HTTP head");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(raw.substr(0, head_end), "\r\n");
  std::vector<absl::string_view> status_line = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  HttpClientResponse out;
  if (status_line.size() < 2 || !absl::StartsWith(status_line[0], "HTTP/1.") ||
      status_line[1].size() != 3 || !absl::SimpleAtoi(status_line[1], &out.status) ||
      out.status < 100) {
    return absl::UnavailableError(absl::StrFormat("the answer is not HTTP (status line \"%s\")",
                                                  absl::CHexEscape(lines[0].substr(0, 80))));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::UnavailableError(
          absl::StrCat("malformed header line ", i + 1, " in the answer"));
    }
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    absl::string_view value = absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    auto [it, inserted] = out.headers.emplace(name, std::string(value));
    if (!inserted) {
      absl::StrAppend(&it->second, ", ", value);
    }
  }
  absl::string_view body = raw.substr(head_end + 4);
  auto encoding = out.headers.find("transfer-encoding");
  auto length = out.headers.find("content-length");
  if (encoding != out.headers.end() &&
      absl::StrContains(absl::AsciiStrToLower(encoding->second), "chunked")) {
    absl::StatusOr<std::string> decoded = DecodeChunked(body);
    if (!decoded.ok()) {
      return absl::UnavailableError(decoded.status().message());
    }
    out.body = *std::move(decoded);
  } else if (length != out.headers.end()) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(length->second, &n)) {
      return absl::UnavailableError(
          absl::StrFormat("bad Content-Length \"%s\" in the answer", length->second));
    }
    if (n > body.size()) {
      return absl::UnavailableError(
          absl::StrFormat("the answer ended after %d of %d body bytes", body.size(), n));
    }
    out.body = std::string(body.substr(0, n));
  } else {
    out.body = std::string(body);
  }
  return out;
}

absl::StatusOr<HttpClientResponse> HttpFetch(absl::string_view method, absl::string_view url,
                                             absl::string_view body, absl::string_view content_type,
                                             const HttpClientOptions& options) {
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + options.timeout;
  const std::string where = absl::StrCat(method, " ", url);
  absl::StatusOr<ParsedUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) {
    return parsed.status();
  }
  if (!options.unix_socket.empty() && parsed->tls) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": https over a unix socket"));
  }
  const absl::Time connect_deadline = std::min(deadline, start + options.connect_timeout);
  absl::StatusOr<int> connected = options.unix_socket.empty()
                                      ? Connect(*parsed, connect_deadline, options, where)
                                      : ConnectUnix(options.unix_socket, connect_deadline, where);
  if (!connected.ok()) {
    return connected.status();
  }
  Fd fd{*connected};
  SigpipeGuard sigpipe_guard;

  std::unique_ptr<SSL_CTX, SslDeleter> ctx;
  std::unique_ptr<SSL, SslDeleter> ssl;
  if (parsed->tls) {
    ERR_clear_error();
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    if (ctx == nullptr) {
      return absl::InternalError(absl::StrCat(where, ": TLS: ", SslErrorText(kPeerClosed)));
    }
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
    int loaded = options.tls_ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                                             : SSL_CTX_load_verify_locations(
                                                   ctx.get(), options.tls_ca_file.c_str(), nullptr);
    if (loaded != 1) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: TLS CA %s: %s", where,
                          options.tls_ca_file.empty() ? "(system)" : options.tls_ca_file,
                          SslErrorText(kPeerClosed)));
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (!options.tls_cert_file.empty() &&
        (SSL_CTX_use_certificate_chain_file(ctx.get(), options.tls_cert_file.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx.get(), options.tls_key_file.c_str(), SSL_FILETYPE_PEM) !=
             1)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: TLS client certificate %s / key %s: %s", where,
                          options.tls_cert_file, options.tls_key_file, SslErrorText(kPeerClosed)));
    }
    ssl.reset(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), fd.fd);
    SSL_set1_host(ssl.get(), parsed->host.c_str());
    SSL_set_tlsext_host_name(ssl.get(), parsed->host.c_str());
    while (true) {
      ERR_clear_error();
      int r = SSL_connect(ssl.get());
      if (r == 1) {
        break;
      }
      int err = SSL_get_error(ssl.get(), r);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (!WaitFor(fd.fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          return absl::DeadlineExceededError(absl::StrCat(where, ": TLS handshake timed out"));
        }
        continue;
      }
      long verify = SSL_get_verify_result(ssl.get());
      if (verify != X509_V_OK) {
        ERR_clear_error();
        return absl::UnauthenticatedError(
            absl::StrCat(where, ": server certificate: ", X509_verify_cert_error_string(verify)));
      }
      return absl::UnavailableError(
          absl::StrCat(where, ": TLS handshake: ", SslErrorText(kPeerClosed)));
    }
  }

  std::string request =
      absl::StrCat(method, " ", parsed->target, " HTTP/1.1\r\nHost: ", parsed->host, ":",
                   parsed->port, "\r\nConnection: close\r\n");
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
    if (!content_type.empty()) {
      absl::StrAppend(&request, "Content-Type: ", content_type, "\r\n");
    }
  }
  for (const auto& [name, value] : options.headers) {
    absl::StrAppend(&request, name, ": ", value, "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);

  // Send.
  size_t sent = 0;
  while (sent < request.size()) {
    const char* data = request.data() + sent;
    const size_t left = request.size() - sent;
    short wait = POLLOUT;
    if (ssl == nullptr) {
      ssize_t n = send(fd.fd, data, left, MSG_NOSIGNAL);
      if (n >= 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat(where, ": send: ", ErrnoText(errno)));
      }
    } else {
      ERR_clear_error();
      int n = SSL_write(ssl.get(), data, static_cast<int>(std::min<size_t>(left, INT_MAX)));
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      int err = SSL_get_error(ssl.get(), n);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        return absl::UnavailableError(
            absl::StrCat(where, ": TLS write: ", SslErrorText(kPeerClosed)));
      }
      wait = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    }
    if (!WaitFor(fd.fd, wait, deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(where, ": timed out sending the request"));
    }
  }

  // Receive to the close, or to Content-Length once the head is in.
  std::string raw;
  char chunk[16 * 1024];
  while (true) {
    if (size_t head_end = raw.find("\r\n\r\n"); head_end != std::string::npos) {
      absl::StatusOr<HttpClientResponse> early = ParseHttpResponse(raw);
      if (early.ok() && early->headers.count("content-length") > 0 &&
          early->headers.count("transfer-encoding") == 0) {
        return early;
      }
    }
    ssize_t n = 0;
    short wait = POLLIN;
    if (ssl == nullptr) {
      n = recv(fd.fd, chunk, sizeof(chunk), 0);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return absl::UnavailableError(absl::StrCat(where, ": recv: ", ErrnoText(errno)));
      }
    } else {
      ERR_clear_error();
      int r = SSL_read(ssl.get(), chunk, sizeof(chunk));
      if (r > 0) {
        n = r;
      } else {
        int err = SSL_get_error(ssl.get(), r);
        if (err == SSL_ERROR_ZERO_RETURN) {
          n = 0;
        } else if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          n = -1;
          wait = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
          n = 0;  // closed without close_notify: what we have is what there is
        } else {
          return absl::UnavailableError(
              absl::StrCat(where, ": TLS read: ", SslErrorText(kPeerClosed)));
        }
      }
    }
    if (n == 0) {
      break;
    }
    if (n > 0) {
      raw.append(chunk, static_cast<size_t>(n));
      if (raw.size() > options.max_response_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrFormat("%s: the answer exceeds %d bytes", where, options.max_response_bytes));
      }
      continue;
    }
    if (!WaitFor(fd.fd, wait, deadline)) {
      return absl::DeadlineExceededError(absl::StrFormat("%s: no complete answer within %s", where,
                                                         absl::FormatDuration(options.timeout)));
    }
  }
  absl::StatusOr<HttpClientResponse> response = ParseHttpResponse(raw);
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        absl::StrCat(where, ": ", response.status().message()));
  }
  return response;
}

}  // namespace vigil::http
