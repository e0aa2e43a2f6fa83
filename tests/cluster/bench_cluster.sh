#!/usr/bin/env bash
# bench_cluster.sh BUILD_DIR MODEL [N_GEN] [THREADS]: decode tok/s for one
# process, coordinator + 1 worker and + 2 workers, on loopback and through
# st_delay_proxy at 0.5 ms and 2 ms round trip; per-layer-step overhead
# p50/p99 (request built to reply in hand, minus the worker's compute time),
# and mean, the step's round trip and the worker's compute time (p50), the
# mean time per layer (expert step plus the coordinator's work between
# steps; 32 of them make a token of the 4B model), and bytes on the wire per
# token, from `smallthinker bench --workers` (its "cluster:" line); then
# the goal's ratio, cluster over single process, as `bench --vs-local`
# measures it: the median over ROUNDS (default 9) rounds that each time one
# decode on a pinned coordinator + 1 worker and one on the coordinator
# alone, in turns (loopback TCP, then a Unix socket).
# Same-host rows: workers on Unix domain sockets (unix:PATH), and the split
# of a 2-core host: the coordinator keeps SPLIT_SHARE (default 0.5) of the
# experts and computes them on its forward thread alone (local_threads 1)
# while a one-thread worker computes the rest, then polls for the reply for
# up to SPIN_US (default 200) microseconds before sleeping. Pinned rows: the
# single process, and coordinator and worker both, with --cpus set to the
# first THREADS CPUs this script may use (threads take turns on each core).
# LEAN=1 (for models whose experts fill the RAM, e.g. the 21b preset: every
# worker keeps the experts it was ever assigned): fresh workers for each
# group of rows, killed after it, and only the loopback and delay-proxy rows.
set -euo pipefail
build=$1 model=$2 n=${3:-32} t=${4:-2}
st=$build/tools/smallthinker proxy=$build/tests/cluster/st_delay_proxy
tmp=$(mktemp -d)
# start() runs in a command substitution (a subshell): it records its pids
# in a file, not in a variable of this shell.
cleanup() {
  [ -f "$tmp/pids" ] && while read -r p; do kill "$p" 2>/dev/null || true; done <"$tmp/pids"
  rm -rf "$tmp"
}
trap cleanup EXIT

start() {  # start OUTFILE CMD...: run CMD in background, wait for "listening ADDR"
  local out=$1; shift
  "$@" >"$out" 2>/dev/null &
  echo $! >>"$tmp/pids"
  for _ in $(seq 1 1200); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
  cut -d' ' -f2 "$out"
}

bench() {  # bench LABEL [--workers ...]
  local label=$1; shift
  "$st" bench -m "$model" -p 0 -n "$n" -r 3 -t "$t" -o json --bandwidth-size 64MiB "$@" \
    >"$tmp/b.json" 2>"$tmp/b.err"
  /usr/bin/python3 - "$label" "$tmp/b.json" "$tmp/b.err" "$n" <<'PY'
import json, re, sys
label, jpath, epath, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
j = json.load(open(jpath))
tg = [t for t in j["tests"] if t["test"].startswith("tg")][0]
line = [l for l in open(epath) if l.startswith("cluster:")]
p50 = p99 = bpt = rt = comp = mo = ms = "-"
if line:
    l = line[0]
    steps = int(re.search(r"(\d+) layer steps", l).group(1))
    wire = int(re.search(r"(\d+) bytes on the wire", l).group(1))
    p50 = re.search(r"p50 (\d+) us", l).group(1)
    p99 = re.search(r"p99 (\d+) us", l).group(1)
    layers = j.get("n_layers") or 32
    bpt = "%.0f KiB" % (wire / (steps / layers) / 1024)
    parts = re.search(r"round trip (\d+) us, worker compute (\d+) us", l)
    if parts:
        rt, comp = parts.group(1), parts.group(2)
    means = re.search(r"means: overhead (\d+) us.*step (\d+) us, between steps (\d+) us", l)
    if means:
        mo, ms = means.group(1), str(int(means.group(2)) + int(means.group(3)))
print(f"| {label} | {tg['avg_ts']:.2f} ± {tg['stddev_ts']:.2f} | {p50} | {p99} | {mo} | {rt} | {comp} | {ms} | {bpt} |")
PY
}

echo "| setup | decode tok/s | step overhead p50 µs | p99 µs | mean µs | round trip p50 µs | worker compute p50 µs | layer mean µs | wire bytes/token |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
bench "1 process" --no-pack  # GGUF experts, as the coordinator and workers use
cpus=$(/usr/bin/python3 -c "import os; print(','.join(map(str, sorted(os.sched_getaffinity(0))[:$t])))")
stop_all() {  # kill every worker and proxy started so far, and wait for them
  while read -r p; do kill "$p" 2>/dev/null || true; done <"$tmp/pids"
  while read -r p; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done <"$tmp/pids"
  : >"$tmp/pids"
}
if [ "${LEAN:-0}" = 1 ]; then
  for k in 1 2; do
    w1=$(start "$tmp/w1_$k" "$st" worker -m "$model" --listen 127.0.0.1:0 -t "$t")
    list=$w1
    if [ "$k" = 2 ]; then
      w2=$(start "$tmp/w2_$k" "$st" worker -m "$model" --listen 127.0.0.1:0 -t "$t")
      list="$w1,$w2"
    fi
    bench "coordinator + $k worker(s), loopback" --workers "$list"
    for us in 250 1000; do
      p1=$(start "$tmp/p1_${k}_$us" "$proxy" "${w1##*:}" "$us")
      plist=$p1
      if [ "$k" = 2 ]; then
        p2=$(start "$tmp/p2_${k}_$us" "$proxy" "${w2##*:}" "$us")
        plist="$p1,$p2"
      fi
      bench "coordinator + $k worker(s), $(/usr/bin/python3 -c "print($us*2/1000)") ms RTT" \
        --workers "$plist"
    done
    stop_all
  done
else
bench "1 process, --cpus $cpus" --no-pack --cpus "$cpus"
c1=$(start "$tmp/c1" "$st" worker -m "$model" --listen 127.0.0.1:0 -t "$t" --cpus "$cpus")
bench "coordinator + 1 worker, loopback, both --cpus $cpus" --workers "$c1" --cpus "$cpus"
kill "$(tail -n 1 "$tmp/pids")"  # that worker (its threads are pinned)
w1=$(start "$tmp/w1" "$st" worker -m "$model" --listen 127.0.0.1:0 -t "$t")
w2=$(start "$tmp/w2" "$st" worker -m "$model" --listen 127.0.0.1:0 -t "$t")
bench "coordinator + 1 worker, loopback" --workers "$w1"
bench "coordinator + 2 workers, loopback" --workers "$w1,$w2"
u1=$(start "$tmp/u1" "$st" worker -m "$model" --listen "unix:$tmp/u1.sock" -t "$t")
u2=$(start "$tmp/u2" "$st" worker -m "$model" --listen "unix:$tmp/u2.sock" -t "$t")
bench "coordinator + 1 worker, unix socket" --workers "$u1"
bench "coordinator + 2 workers, unix socket" --workers "$u1,$u2"
s1=$(start "$tmp/s1" "$st" worker -m "$model" --listen "unix:$tmp/s1.sock" -t 1)
printf 'local_share: %s\nlocal_threads: 1\nspin_us: %s\n' "${SPLIT_SHARE:-0.5}" \
  "${SPIN_US:-200}" >"$tmp/split.txtpb"
bench "split: coordinator -t $t (own ${SPLIT_SHARE:-0.5} on 1 thread) + 1 worker -t 1, unix socket" \
  --workers "$s1" --cluster-config "$tmp/split.txtpb"
for us in 250 1000; do
  p1=$(start "$tmp/p1_$us" "$proxy" "${w1##*:}" "$us")
  p2=$(start "$tmp/p2_$us" "$proxy" "${w2##*:}" "$us")
  rtt=$(/usr/bin/python3 -c "print($us*2/1000)")
  bench "coordinator + 1 worker, $rtt ms RTT" --workers "$p1"
  bench "coordinator + 2 workers, $rtt ms RTT" --workers "$p1,$p2"
done
fi

# The goal's ratio on a noisy host: `bench --vs-local` with a pinned
# coordinator + 1 worker runs each decode repetition on the cluster and on
# the coordinator alone, in turns (ABBA), ROUNDS (default 9) times, and
# prints the median of the rounds' cluster/alone ratios. Separate runs of
# the single process and the pair, even alternated, compared this host's
# drift (one setup's tok/s moved by up to 25% between runs a minute apart)
# as much as the two setups.
# The workers and proxies of the rows above go first (they hold memory).
while read -r p; do kill "$p" 2>/dev/null || true; done <"$tmp/pids"
: >"$tmp/pids"
sleep 2
echo
vs_local() {  # vs_local LABEL ADDRESS
  "$st" bench -m "$model" -p 0 -n "$n" -r "${ROUNDS:-9}" -t "$t" --cpus "$cpus" \
    --bandwidth-size 64MiB --workers "$2" --vs-local 2>/dev/null | grep '^vs local' |
    sed "s|^vs local: |$1: |"
}
if [ "${LEAN:-0}" = 1 ]; then  # the coordinator would hold every expert, besides the worker
  echo "(LEAN=1: no --vs-local rows; they hold the model's experts twice)"
  exit 0
fi
a=$(start "$tmp/vs_tcp" "$st" worker -m "$model" --listen 127.0.0.1:0 -t "$t" --cpus "$cpus")
vs_local "coordinator + 1 worker (loopback TCP), both --cpus $cpus" "$a"
stop_all
a=$(start "$tmp/vs_unix" "$st" worker -m "$model" --listen "unix:$tmp/vs.sock" -t "$t" --cpus "$cpus")
vs_local "coordinator + 1 worker (unix socket), both --cpus $cpus" "$a"
stop_all
