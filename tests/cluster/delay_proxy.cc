#include "tests/cluster/delay_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <string>

namespace st::testing {

using Clock = std::chrono::steady_clock;

// One direction of one connection: a reader thread stamps chunks with their
// due time, a writer thread sends them when due.
struct Direction {
  int from = -1, to = -1;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<Clock::time_point, std::string>> queue;
  bool eof = false;
  std::thread reader, writer;
};

struct DelayProxy::Pipe {
  int client = -1, upstream = -1;
  Direction up, down;
};

namespace {

void Pump(Direction* d, DelayProxy* proxy, std::atomic<int>* delay_us, std::atomic<uint64_t>* bytes,
          std::atomic<bool>* stop) {
  d->reader = std::thread([d, delay_us, bytes, stop] {
    char buf[65536];
    while (!*stop) {
      const ssize_t n = read(d->from, buf, sizeof(buf));
      if (n <= 0) break;
      *bytes += n;
      std::lock_guard<std::mutex> lock(d->mu);
      d->queue.emplace_back(Clock::now() + std::chrono::microseconds(delay_us->load()),
                            std::string(buf, n));
      d->cv.notify_one();
    }
    std::lock_guard<std::mutex> lock(d->mu);
    d->eof = true;
    d->cv.notify_one();
  });
  d->writer = std::thread([d, stop] {
    while (true) {
      std::unique_lock<std::mutex> lock(d->mu);
      d->cv.wait(lock, [&] { return !d->queue.empty() || d->eof || *stop; });
      if (d->queue.empty()) break;  // eof or stop
      auto [due, data] = std::move(d->queue.front());
      d->queue.pop_front();
      lock.unlock();
      std::this_thread::sleep_until(due);
      size_t off = 0;
      while (off < data.size()) {
        const ssize_t n = send(d->to, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += n;
      }
      if (off < data.size()) break;
    }
    shutdown(d->to, SHUT_WR);
  });
}

}  // namespace

DelayProxy::DelayProxy(int upstream_port, int one_way_delay_us)
    : upstream_port_(upstream_port), delay_us_(one_way_delay_us) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(listen_fd_, 16);
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

void DelayProxy::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int client = accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    const int upstream = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(upstream_port_);
    if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(client);
      close(upstream);
      continue;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto pipe = std::make_unique<Pipe>();
    pipe->client = client;
    pipe->upstream = upstream;
    pipe->up.from = client;
    pipe->up.to = upstream;
    pipe->down.from = upstream;
    pipe->down.to = client;
    Pump(&pipe->up, this, &delay_us_, &bytes_, &stop_);
    Pump(&pipe->down, this, &delay_us_, &bytes_, &stop_);
    std::lock_guard<std::mutex> lock(mu_);
    pipes_.push_back(std::move(pipe));
  }
}

DelayProxy::~DelayProxy() {
  stop_ = true;
  acceptor_.join();
  close(listen_fd_);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& p : pipes_) {
    shutdown(p->client, SHUT_RDWR);
    shutdown(p->upstream, SHUT_RDWR);
    for (Direction* d : {&p->up, &p->down}) {
      {
        std::lock_guard<std::mutex> l(d->mu);
        d->eof = true;
        d->queue.clear();
        d->cv.notify_all();
      }
      d->reader.join();
      d->writer.join();
    }
    close(p->client);
    close(p->upstream);
  }
}

}  // namespace st::testing
