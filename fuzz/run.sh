#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, from the checked-in corpus (new inputs
# go to a scratch copy, so the corpus changes only when someone adds to it). A crash
# leaves its input in fuzz/artifacts/<target>/ and fails the run.
#   bash fuzz/run.sh [seconds per target, default 20]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
fuzz="../.tools/bin/cargo-fuzz"
[ -x "$fuzz" ] || cargo install cargo-fuzz --version 0.13.2 --locked --root ../.tools --quiet
targets=(request_frame record_batch journal_file metadata segment_footer)
# --sanitizer none: the code is safe Rust; the fuzzers look for panics, aborts,
# runaway allocations and hangs. It also needs no nightly toolchain.
"$fuzz" build --sanitizer none --release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "-- fuzz $t for ${seconds}s"
  "$fuzz" run --sanitizer none --release "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::new_units_added|SUMMARY|==[0-9]+== ERROR)|panicked|Failing input' || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz target $t failed; inputs in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
