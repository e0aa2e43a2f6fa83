// st_delay_proxy UPSTREAM_PORT ONE_WAY_DELAY_US: the tests' DelayProxy as a
// program, for benchmarks through an emulated network round trip. Prints
// "listening 127.0.0.1:PORT" and runs until killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "tests/cluster/delay_proxy.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: st_delay_proxy UPSTREAM_PORT ONE_WAY_DELAY_US\n");
    return 2;
  }
  st::testing::DelayProxy proxy(std::atoi(argv[1]), std::atoi(argv[2]));
  std::printf("listening 127.0.0.1:%d\n", proxy.port());
  std::fflush(stdout);
  while (true) pause();
}
