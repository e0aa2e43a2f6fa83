#!/usr/bin/env bash
# Fuzzes the GGUF reader (and the writer, via the harness's round trip) with
# libFuzzer + ASan + UBSan for N seconds over a scratch copy of the seed corpus.
#
#   tests/fuzz/run_fuzz.sh [seconds=60] [build_dir=build-fuzz]
#
# Configures a separate clang build (-DST_FUZZ=ON -DST_SANITIZE=ON), builds only
# the gguf_fuzz target, and runs it on at most 2 cores' worth of work (one
# process). Crashes are written to <build_dir>/fuzz-artifacts/; reproduce with
#   <build_dir>/tests/fuzz/gguf_fuzz <artifact>
# and, once fixed, copy the input into tests/fuzz/corpus/gguf/ as a regression
# seed. New interesting inputs stay in the scratch corpus printed at the end.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${2:-${root}/build-fuzz}"
case "${build}" in /*) ;; *) build="${root}/${build}" ;; esac

cmake -S "${root}" -B "${build}" -G Ninja \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DST_FUZZ=ON -DST_SANITIZE=ON -DST_BUILD_BENCHMARKS=OFF >/dev/null
ninja -C "${build}" -j2 gguf_fuzz

work="$(mktemp -d "${TMPDIR:-/tmp}/gguf_fuzz_corpus.XXXXXX")"
cp "${root}/tests/fuzz/corpus/gguf/"* "${work}/"
artifacts="${build}/fuzz-artifacts"
mkdir -p "${artifacts}"

echo "fuzzing gguf_fuzz for ${seconds}s; corpus ${work}; artifacts ${artifacts}"
"${build}/tests/fuzz/gguf_fuzz" \
  -max_total_time="${seconds}" \
  -max_len=16384 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -dict="${root}/tests/fuzz/gguf.dict" \
  -artifact_prefix="${artifacts}/" \
  -print_final_stats=1 \
  "${work}"
echo "done; grown corpus in ${work}"
