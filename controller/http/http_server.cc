// HttpServer: accept thread, worker pool, request parsing and response writing. See the header for
// the contract; the limits and timeouts below are what keep a misbehaving client from holding a
// worker for longer than Options allows.
#include "controller/http/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace vigil::controller {
namespace {

constexpr size_t kReadChunk = 8192;
// After the response, unread request bytes are drained for this long (at most kDrainBytes) so that
// closing does not reset the connection before the client has read the response.
constexpr absl::Duration kDrainTime = absl::Milliseconds(500);
constexpr size_t kDrainBytes = 256 * 1024;

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

HttpResponse TextResponse(int status, absl::string_view text) {
  HttpResponse response;
  response.status = status;
  response.body = absl::StrCat(text, "\n");
  return response;
}

std::string Serialize(const HttpResponse& response, absl::string_view extra_headers) {
  return absl::StrCat("HTTP/1.1 ", response.status, " ", ReasonPhrase(response.status),
                      "\r\nContent-Type: ", response.content_type,
                      "\r\nContent-Length: ", response.body.size(), "\r\n", extra_headers,
                      "Connection: close\r\n\r\n", response.body);
}

void SetSocketTimeout(int fd, int option, absl::Duration d) {
  // 0 would mean "no timeout" to the kernel.
  timeval tv = absl::ToTimeval(std::max(d, absl::Milliseconds(1)));
  setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv));
}

// Sends everything, or gives up on an error, a write timeout or the deadline.
bool SendAll(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    if (absl::Now() >= deadline) {
      return false;
    }
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

enum class ReadResult { kData, kClosed, kTimeout, kError };

// Appends what one recv returns to *buf. Each wait is bounded by read_timeout and by the deadline.
ReadResult ReadSome(int fd, std::string* buf, absl::Duration read_timeout, absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    return ReadResult::kTimeout;
  }
  SetSocketTimeout(fd, SO_RCVTIMEO, std::min(read_timeout, left));
  char chunk[kReadChunk];
  while (true) {
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf->append(chunk, static_cast<size_t>(n));
      return ReadResult::kData;
    }
    if (n == 0) {
      return ReadResult::kClosed;
    }
    if (errno == EINTR) {
      continue;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK ? ReadResult::kTimeout : ReadResult::kError;
  }
}

// Half-closes, then reads and discards what the client still sends for a moment, so that the
// kernel does not answer unread data with a reset that could destroy the response in flight.
void FinishConnection(int fd) {
  shutdown(fd, SHUT_WR);
  absl::Time deadline = absl::Now() + kDrainTime;
  size_t drained = 0;
  std::string sink;
  while (drained < kDrainBytes) {
    sink.clear();
    if (ReadSome(fd, &sink, kDrainTime, deadline) != ReadResult::kData) {
      return;
    }
    drained += sink.size();
  }
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// Parses the request line and headers (without the final empty line) into *request. Returns the
// error response for a request that cannot be served.
std::optional<HttpResponse> ParseHead(absl::string_view head, HttpRequest* request) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || !IsToken(parts[0]) || parts[1].empty() || parts[1][0] != '/' ||
      !absl::StartsWith(parts[2], "HTTP/")) {
    return TextResponse(400, "malformed request line");
  }
  for (char c : parts[1]) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return TextResponse(400, "malformed request line");
    }
  }
  if (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
    return TextResponse(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  request->method = std::string(parts[0]);
  absl::string_view target = parts[1];
  size_t question = target.find('?');
  request->path = std::string(target.substr(0, question));
  if (question != absl::string_view::npos) {
    request->query = std::string(target.substr(question + 1));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      return TextResponse(400, "folded header lines are not supported");
    }
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
      return TextResponse(400, absl::StrCat("malformed header line ", i + 1));
    }
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    auto [it, inserted] = request->headers.emplace(name, std::string(value));
    if (!inserted) {
      absl::StrAppend(&it->second, ", ", value);
    }
  }
  return std::nullopt;
}

}  // namespace

void HttpServer::Handle(std::string method, std::string path, Handler handler) {
  absl::MutexLock lock(&routes_mu_);
  routes_[std::move(path)][std::move(method)] = std::move(handler);
}

absl::Status HttpServer::Start(const std::string& listen) {
  absl::MutexLock life(&lifecycle_mu_);
  if (running_) {
    return absl::FailedPreconditionError(
        absl::StrFormat("HTTP server already listening on port %d", port_.load()));
  }
  size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon + 1 == listen.size() ||
      !std::all_of(listen.begin() + colon + 1, listen.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("HTTP listen address \"%s\" is not HOST:PORT", listen));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "*") {
    host.clear();
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addrs = nullptr;
  std::string port_text = std::to_string(port);
  int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &addrs);
  if (gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cannot listen on %s: %s", listen, gai_strerror(gai)));
  }
  int fd = -1;
  std::string failure;
  for (addrinfo* ai = addrs; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      failure = absl::StrCat("socket: ", ErrnoText(errno));
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const char* step = nullptr;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      step = "bind";
    } else if (::listen(fd, 128) != 0) {
      step = "listen";
    }
    if (step != nullptr) {
      failure = absl::StrCat(step, ": ", ErrnoText(errno));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(addrs);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrFormat("cannot listen on %s: %s", listen, failure));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrFormat("cannot listen on %s: getsockname: %s", listen, ErrnoText(err)));
  }
  int bound_port = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  listen_fd_ = fd;
  port_.store(bound_port);
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = false;
  }
  int workers = std::max(1, options_.worker_threads);
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  running_ = true;
  spdlog::info("HTTP server listening on {} (port {})", listen, bound_port);
  return absl::OkStatus();
}

void HttpServer::Stop() {
  absl::MutexLock life(&lifecycle_mu_);
  if (!running_) {
    return;
  }
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
    // Clients in the middle of a request see their connection end now, not at their timeout.
    for (int fd : active_) {
      shutdown(fd, SHUT_RDWR);
    }
  }
  // Wakes accept(): on Linux it then fails with EINVAL.
  shutdown(listen_fd_, SHUT_RDWR);
  accept_thread_.join();
  for (std::thread& worker : workers_) {
    worker.join();
  }
  workers_.clear();
  {
    absl::MutexLock lock(&queue_mu_);
    for (int fd : pending_) {
      close(fd);
    }
    pending_.clear();
  }
  close(listen_fd_);
  listen_fd_ = -1;
  port_.store(0);
  running_ = false;
}

void HttpServer::AcceptLoop() {
  while (true) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      {
        absl::MutexLock lock(&queue_mu_);
        if (stopping_) {
          return;
        }
      }
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) {
        continue;
      }
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        spdlog::warn("HTTP server: accept: {}; retrying", ErrnoText(err));
        absl::SleepFor(absl::Milliseconds(100));
        continue;
      }
      spdlog::error("HTTP server on port {}: accept: {}; no longer accepting", port_.load(),
                    ErrnoText(err));
      return;
    }
    {
      absl::MutexLock lock(&queue_mu_);
      if (stopping_) {
        close(fd);
        return;
      }
      if (pending_.size() < options_.max_pending_connections) {
        pending_.push_back(fd);
        continue;
      }
    }
    // Every worker is busy and the queue is full: say so without waiting for the client.
    std::string busy = Serialize(TextResponse(503, "server busy"), "");
    send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
  }
}

void HttpServer::WorkerLoop() {
  while (true) {
    int fd = -1;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() { return stopping_ || !pending_.empty(); };
      queue_mu_.Await(absl::Condition(&ready));
      if (stopping_) {
        return;
      }
      fd = pending_.front();
      pending_.pop_front();
      active_.push_back(fd);
    }
    Serve(fd);
    {
      absl::MutexLock lock(&queue_mu_);
      active_.erase(std::find(active_.begin(), active_.end(), fd));
    }
    close(fd);
  }
}

void HttpServer::Serve(int fd) {
  SetSocketTimeout(fd, SO_SNDTIMEO, options_.write_timeout);
  const absl::Time deadline = absl::Now() + options_.request_timeout;
  std::string extra_headers;
  auto respond = [&](const HttpResponse& response) {
    SendAll(fd, Serialize(response, extra_headers), absl::Now() + options_.request_timeout);
    FinishConnection(fd);
  };

  std::string buf;
  size_t head_end = std::string::npos;
  while (true) {
    head_end = buf.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      break;
    }
    if (buf.size() >= options_.max_header_bytes) {
      return respond(TextResponse(
          431, absl::StrFormat("request headers exceed %d bytes", options_.max_header_bytes)));
    }
    ReadResult r = ReadSome(fd, &buf, options_.read_timeout, deadline);
    if (r == ReadResult::kData) {
      continue;
    }
    if (r == ReadResult::kTimeout) {
      return respond(TextResponse(408, "timed out waiting for the request"));
    }
    if (r == ReadResult::kClosed && !buf.empty()) {
      spdlog::debug("HTTP: client closed the connection within the request headers");
    }
    return;  // closed or failed: nobody to answer
  }
  if (head_end + 4 > options_.max_header_bytes) {
    return respond(TextResponse(
        431, absl::StrFormat("request headers exceed %d bytes", options_.max_header_bytes)));
  }

  HttpRequest request;
  if (std::optional<HttpResponse> error =
          ParseHead(absl::string_view(buf).substr(0, head_end), &request)) {
    return respond(*error);
  }
  if (request.headers.count("transfer-encoding") > 0) {
    return respond(TextResponse(411, "Transfer-Encoding is not supported; send Content-Length"));
  }
  auto length_header = request.headers.find("content-length");
  uint64_t length = 0;
  if (length_header != request.headers.end()) {
    const std::string& text = length_header->second;
    if (text.empty() || text.size() > 18 ||
        !std::all_of(text.begin(), text.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(text, &length)) {
      return respond(TextResponse(400, absl::StrFormat("invalid Content-Length \"%s\"", text)));
    }
    if (length > options_.max_body_bytes) {
      return respond(TextResponse(
          413, absl::StrFormat("request body exceeds %d bytes", options_.max_body_bytes)));
    }
  } else if (request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
    return respond(TextResponse(411, absl::StrCat(request.method, " needs a Content-Length")));
  }

  request.body = buf.substr(head_end + 4);
  while (request.body.size() < length) {
    ReadResult r = ReadSome(fd, &request.body, options_.read_timeout, deadline);
    if (r == ReadResult::kTimeout) {
      return respond(TextResponse(408, "timed out waiting for the request body"));
    }
    if (r != ReadResult::kData) {
      return;  // the client went away mid-body
    }
  }
  request.body.resize(length);

  HttpResponse response;
  std::optional<Handler> handler = [&]() -> std::optional<Handler> {
    absl::MutexLock lock(&routes_mu_);
    auto path = routes_.find(request.path);
    if (path == routes_.end()) {
      response = TextResponse(404, absl::StrCat("no such path: ", request.path));
      return std::nullopt;
    }
    auto method = path->second.find(request.method);
    if (method == path->second.end()) {
      std::vector<std::string> allowed;
      for (const auto& [name, unused] : path->second) {
        allowed.push_back(name);
      }
      extra_headers = absl::StrCat("Allow: ", absl::StrJoin(allowed, ", "), "\r\n");
      response = TextResponse(405, absl::StrCat(request.method, " is not allowed on ", request.path,
                                                "; use ", absl::StrJoin(allowed, ", ")));
      return std::nullopt;
    }
    return method->second;
  }();
  if (handler.has_value()) {
    try {
      response = (*handler)(request);
    } catch (const std::exception& e) {
      spdlog::error("HTTP handler for {} {} threw: {}", request.method, request.path, e.what());
      response = TextResponse(500, "internal error");
    } catch (...) {
      spdlog::error("HTTP handler for {} {} threw a non-standard exception", request.method,
                    request.path);
      response = TextResponse(500, "internal error");
    }
    if (response.status < 100 || response.status > 599) {
      spdlog::error("HTTP handler for {} {} returned status {}", request.method, request.path,
                    response.status);
      response = TextResponse(500, "internal error");
    }
  }
  spdlog::debug("HTTP {} {} -> {}", request.method, request.path, response.status);
  respond(response);
}

}  // namespace vigil::controller
