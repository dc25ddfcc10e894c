#!/bin/sh
# A `taskstate bench --against` target with fixed answers, for tests:
#
#   sh fake_bench_target.sh NAME LOG [RUN_REPLY]
#
# Answers hello with NAME; open, close and validate with success; every run
# with RUN_REPLY (default: 1,000 items in 0.5 s, valid). Appends
# "NAME REQUEST" to LOG for every request it gets.
name="$1"
log="$2"
default='{"items":1000,"seconds":0.5,"error":null}'
run="${3:-$default}"
while IFS= read -r line; do
  printf '%s %s\n' "$name" "$line" >> "$log"
  case "$line" in
    *'"cmd":"hello"'*) printf '{"name":"%s"}\n' "$name" ;;
    *'"cmd":"open"'*|*'"cmd":"close"'*) echo '{}' ;;
    *'"cmd":"run"'*) printf '%s\n' "$run" ;;
    *'"cmd":"validate"'*) echo '{"error":null}' ;;
  esac
done
