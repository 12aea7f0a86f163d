// What an HTTP/2 connection with one long gRPC stream costs in the heap when the server side is
// nghttp2 (Debian's libnghttp2) rather than gRPC's own transport: the sizing question behind
// moving agent ingest off gRPC's server (README, "Where an agent's controller memory goes").
//
// For N connections, a client and a server session are paired in memory (no sockets): the client
// opens POST /vigil.v1.AgentService/Stream with gRPC's headers and sends one length-prefixed
// message of an agent's size; the server answers with its headers and one message, and keeps the
// stream open, as the controller does. The client sessions are then deleted and the heap the N
// server sessions hold is counted (glibc's mallinfo2: this program is not linked with jemalloc).
// Prints bytes per server session at 1,000 and 10,000 connections and the slope between them,
// and what a server session holds before any byte arrives.
#include <malloc.h>
#include <nghttp2/nghttp2.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Pair {
  nghttp2_session* client = nullptr;
  nghttp2_session* server = nullptr;
};

// One gRPC message: a 5-byte prefix (not compressed, big-endian length) and `size` bytes.
std::string GrpcMessage(size_t size) {
  std::string out(5 + size, 'x');
  out[0] = 0;
  out[1] = static_cast<char>((size >> 24) & 0xff);
  out[2] = static_cast<char>((size >> 16) & 0xff);
  out[3] = static_cast<char>((size >> 8) & 0xff);
  out[4] = static_cast<char>(size & 0xff);
  return out;
}

// A data source that sends `bytes` once and leaves the stream open.
struct Body {
  std::string bytes;
  size_t offset = 0;
};

ssize_t ReadBody(nghttp2_session* /*session*/, int32_t /*stream_id*/, uint8_t* buf, size_t length,
                 uint32_t* data_flags, nghttp2_data_source* source, void* /*user_data*/) {
  auto* body = static_cast<Body*>(source->ptr);
  const size_t left = body->bytes.size() - body->offset;
  if (left == 0) {
    return NGHTTP2_ERR_DEFERRED;  // the stream stays open, as an agent's does
  }
  const size_t n = left < length ? left : length;
  std::memcpy(buf, body->bytes.data() + body->offset, n);
  body->offset += n;
  *data_flags = 0;
  return static_cast<ssize_t>(n);
}

// Moves every pending byte from `from` to `to`.
bool Pump(nghttp2_session* from, nghttp2_session* to) {
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(from, &data);
    if (n < 0) {
      std::fprintf(stderr, "mem_send: %s\n", nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (n == 0) {
      return true;
    }
    if (const ssize_t r = nghttp2_session_mem_recv(to, data, static_cast<size_t>(n)); r < 0) {
      std::fprintf(stderr, "mem_recv: %s\n", nghttp2_strerror(static_cast<int>(r)));
      return false;
    }
  }
}

nghttp2_nv Header(const char* name, const char* value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value)), std::strlen(name),
          std::strlen(value), NGHTTP2_NV_FLAG_NONE};
}

struct ServerState {
  std::vector<Body>* bodies;
  size_t index;
};

int OnServerHeadersDone(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  auto* state = static_cast<ServerState*>(user_data);
  nghttp2_nv response[] = {Header(":status", "200"), Header("content-type", "application/grpc")};
  nghttp2_data_provider provider{};
  provider.source.ptr = &(*state->bodies)[state->index];
  provider.read_callback = ReadBody;
  return nghttp2_submit_response(session, frame->hd.stream_id, response, 2, &provider);
}

int OnDataChunk(nghttp2_session* /*session*/, uint8_t /*flags*/, int32_t /*stream_id*/,
                const uint8_t* /*data*/, size_t /*len*/, void* /*user_data*/) {
  return 0;  // the message would be handed to ingest here; nothing is kept
}

size_t HeapInUse() { return mallinfo2().uordblks; }

// Returns the heap bytes held by `n` server sessions, each with one open stream.
long MeasureSessions(size_t n) {
  nghttp2_session_callbacks* server_callbacks = nullptr;
  nghttp2_session_callbacks_new(&server_callbacks);
  nghttp2_session_callbacks_set_on_frame_recv_callback(server_callbacks, OnServerHeadersDone);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(server_callbacks, OnDataChunk);
  nghttp2_session_callbacks* client_callbacks = nullptr;
  nghttp2_session_callbacks_new(&client_callbacks);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(client_callbacks, OnDataChunk);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_closed_streams(option, 1);

  std::vector<Pair> pairs(n);
  std::vector<Body> client_bodies(n), server_bodies(n);
  std::vector<ServerState> states(n);
  const std::string hello = GrpcMessage(1400);  // about an agent's batch of 50 series
  const std::string welcome = GrpcMessage(120);
  for (size_t i = 0; i < n; ++i) {
    client_bodies[i].bytes = hello;
    server_bodies[i].bytes = welcome;
  }
  const size_t before = HeapInUse();
  for (size_t i = 0; i < n; ++i) {
    states[i] = {&server_bodies, i};
    if (nghttp2_session_client_new2(&pairs[i].client, client_callbacks, nullptr, option) != 0 ||
        nghttp2_session_server_new2(&pairs[i].server, server_callbacks, &states[i], option) != 0) {
      std::fprintf(stderr, "cannot create the sessions of connection %zu\n", i);
      return -1;
    }
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 16}};
    nghttp2_submit_settings(pairs[i].server, NGHTTP2_FLAG_NONE, settings, 1);
    nghttp2_submit_settings(pairs[i].client, NGHTTP2_FLAG_NONE, nullptr, 0);
    nghttp2_nv request[] = {Header(":method", "POST"),
                            Header(":scheme", "http"),
                            Header(":path", "/vigil.v1.AgentService/Stream"),
                            Header(":authority", "127.0.0.1:7443"),
                            Header("content-type", "application/grpc"),
                            Header("te", "trailers"),
                            Header("user-agent", "grpc-c++/1.51.1 vigil-agent/1.0")};
    nghttp2_data_provider provider{};
    provider.source.ptr = &client_bodies[i];
    provider.read_callback = ReadBody;
    if (nghttp2_submit_request(pairs[i].client, nullptr, request, 7, &provider, nullptr) < 0 ||
        !Pump(pairs[i].client, pairs[i].server) || !Pump(pairs[i].server, pairs[i].client) ||
        !Pump(pairs[i].client, pairs[i].server)) {
      return -1;
    }
  }
  const size_t with_clients = HeapInUse();
  size_t client_bytes = 0;
  for (Pair& p : pairs) {
    const size_t at = HeapInUse();
    nghttp2_session_del(p.client);
    client_bytes += at - HeapInUse();
  }
  const long held = static_cast<long>(with_clients - client_bytes) - static_cast<long>(before);
  for (Pair& p : pairs) {
    nghttp2_session_del(p.server);
  }
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(client_callbacks);
  nghttp2_session_callbacks_del(server_callbacks);
  return held;
}

// Heap of a server session that has seen nothing yet, averaged over 10,000.
double BareSessionBytes() {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  std::vector<nghttp2_session*> sessions(10000);
  const size_t before = HeapInUse();
  for (nghttp2_session*& s : sessions) {
    if (nghttp2_session_server_new(&s, callbacks, nullptr) != 0) {
      std::fprintf(stderr, "nghttp2_session_server_new failed\n");
      std::exit(1);
    }
  }
  const double each = static_cast<double>(HeapInUse() - before) / sessions.size();
  for (nghttp2_session* s : sessions) {
    nghttp2_session_del(s);
  }
  nghttp2_session_callbacks_del(callbacks);
  return each;
}

}  // namespace

int main() {
  std::printf("a server session before any byte: %.0f bytes\n", BareSessionBytes());
  const size_t sizes[] = {1000, 10000};
  long held[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    held[k] = MeasureSessions(sizes[k]);
    if (held[k] < 0) {
      return 1;
    }
    std::printf("%zu server sessions, one open stream each: %.1f KiB of heap, %.0f bytes each\n",
                sizes[k], held[k] / 1024.0, static_cast<double>(held[k]) / sizes[k]);
  }
  std::printf("slope between 1,000 and 10,000: %.0f bytes per connection (nghttp2 %s)\n",
              static_cast<double>(held[1] - held[0]) / (sizes[1] - sizes[0]),
              nghttp2_version(0)->version_str);
  return 0;
}
