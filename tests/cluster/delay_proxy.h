// A TCP proxy for tests that delays every byte by a settable one-way latency
// in each direction (the kernel here has no netem). Listens on 127.0.0.1 at a
// free port and forwards each connection to `upstream_port`.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace st::testing {

class DelayProxy {
 public:
  DelayProxy(int upstream_port, int one_way_delay_us);
  ~DelayProxy();
  int port() const { return port_; }
  void set_delay_us(int one_way_delay_us) { delay_us_ = one_way_delay_us; }
  // Bytes forwarded so far (both directions).
  uint64_t bytes() const { return bytes_; }

 private:
  struct Pipe;
  void AcceptLoop();

  int upstream_port_;
  std::atomic<int> delay_us_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<bool> stop_{false};
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Pipe>> pipes_;
};

}  // namespace st::testing
