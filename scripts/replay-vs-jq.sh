#!/usr/bin/env bash
# replay-vs-jq.sh: the end-to-end figures of docs/performance.md, issue 13's
# targets. On one core (taskset -c CORE, GOMAXPROCS=1) it times
#   trailwatch replay --output json FILE        (all built-in rules)
#   jq -c 'select(<the four card rules>)' FILE
# on the same generated file, interleaved, RUNS times each, and prints the
# medians: wall-clock records/s, CPU-time records/s (user+sys: what one core
# does when nothing else runs on it) and trailwatch's ratio to jq. Inputs
# (generated from ../shared/corpus, nothing stored in the repository):
#   corpus  the real corpus x30, every eventID unique (~100,000 records,
#           12% of them alerting)
#   mix     100,000 corpus records in a production-like mix: one in 200
#           raises an alert
#   mix1m   the same mix at 1,000,000 records (1.2 GB; only when INPUTS
#           names it): the rate once start-up (~40-55 ms of CPU a process)
#           is paid for; jq is not run on it
#
# INPUTS="corpus mix mix1m" chooses the inputs (default: corpus mix).
#
# With BASE=<git revision> set, trailwatch as built at that revision is
# timed too, in the same interleaved runs (before/after on equal terms).
#
# CGO_ENABLED=0 in the environment builds as the Dockerfile and the Lambda
# build do (no libc, no dynamic loader: ~8 ms less start-up a process).
#
# Needs: go, jq (apt-get install jq), taskset (util-linux). Run from the
# repository: [BASE=rev] bash scripts/replay-vs-jq.sh [RUNS] [CORE]
set -euo pipefail
runs=${1:-5}
core=${2:-0}
cd "$(dirname "$0")/.."
for tool in jq taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install jq util-linux)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/trailwatch" ./cmd/trailwatch
if [ -n "${BASE:-}" ]; then
  git worktree add -q --detach "$work/base" "$BASE"
  (cd "$work/base" && go build -o "$work/trailwatch-base" ./cmd/trailwatch)
  git worktree remove --force "$work/base"
fi
inputs=${INPUTS:-corpus mix}
for input in $inputs; do
  case $input in
    corpus) go run ./internal/corpus/gencorpus -copies 30 > "$work/corpus.jsonl" ;;
    mix) go run ./internal/corpus/gencorpus -mix 100000 -alert-every 200 > "$work/mix.jsonl" ;;
    mix1m) go run ./internal/corpus/gencorpus -mix 1000000 -alert-every 200 > "$work/mix1m.jsonl" ;;
    *) echo "unknown input $input (corpus, mix, mix1m)" >&2; exit 1 ;;
  esac
done

# The card's four rules: root console sign-in; CreateSecurityGroup,
# DeleteKeyPair, StopDBInstance/StopDBCluster that succeeded.
card='select((.userIdentity.type == "Root" and .eventName == "ConsoleLogin") or
  (.errorCode == null and (.eventName == "CreateSecurityGroup" or .eventName == "DeleteKeyPair"
   or .eventName == "StopDBInstance" or .eventName == "StopDBCluster")))'

# timed CMD...: runs CMD on the core, prints "wall cpu" in seconds.
timed() {
  local TIMEFORMAT='%R %U %S'
  { time taskset -c "$core" "$@" > /dev/null 2> "$work/stderr"; } 2>&1 | awk '{print $1, $2 + $3}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(go version | cut -d' ' -f3-4), $(jq --version)"
for input in $inputs; do
  file="$work/$input.jsonl"
  withjq=1; [ "$input" = mix1m ] && withjq=0
  n=$(wc -l < "$file")
  : > "$work/tw" ; : > "$work/jq" ; : > "$work/base-times"
  for ((i = 0; i < runs; i++)); do
    GOMAXPROCS=1 timed "$work/trailwatch" replay --output json "$file" >> "$work/tw"
    if [ "$withjq" = 1 ]; then timed jq -c "$card" "$file" >> "$work/jq"; else echo "1 1" >> "$work/jq"; fi
    if [ -n "${BASE:-}" ]; then
      GOMAXPROCS=1 timed "$work/trailwatch-base" replay --output json "$file" >> "$work/base-times"
    fi
  done
  tw_wall=$(cut -d' ' -f1 "$work/tw" | median); tw_cpu=$(cut -d' ' -f2 "$work/tw" | median)
  jq_wall=$(cut -d' ' -f1 "$work/jq" | median); jq_cpu=$(cut -d' ' -f2 "$work/jq" | median)
  awk -v name="$input" -v n="$n" -v tw="$tw_wall" -v twc="$tw_cpu" -v jq="$jq_wall" -v jqc="$jq_cpu" -v runs="$runs" -v withjq="$withjq" 'BEGIN {
    printf "%s (%d records, medians of %d runs, one core):\n", name, n, runs
    printf "  trailwatch replay --output json  %9.0f records/s wall  %9.0f records/cpu-s\n", n / tw, n / twc
    if (withjq) {
      printf "  jq (4 card conditions)           %9.0f records/s wall  %9.0f records/cpu-s\n", n / jq, n / jqc
      printf "  trailwatch / jq                  %9.2fx wall          %9.2fx cpu\n", jq / tw, jqc / twc
    }
  }'
  if [ -n "${BASE:-}" ]; then
    b_wall=$(cut -d' ' -f1 "$work/base-times" | median); b_cpu=$(cut -d' ' -f2 "$work/base-times" | median)
    awk -v n="$n" -v b="$b_wall" -v bc="$b_cpu" -v jq="$jq_wall" -v jqc="$jq_cpu" -v base="$BASE" -v withjq="$withjq" 'BEGIN {
      printf "  trailwatch at %-18s %9.0f records/s wall  %9.0f records/cpu-s", base, n / b, n / bc
      if (withjq) printf "  (%.2fx / %.2fx jq)", jq / b, jqc / bc
      printf "\n"
    }'
  fi
done
