#!/usr/bin/env bash
# A background worker: one log line every ${INTERVAL:-5} seconds.
n=0
while true; do
  n=$((n + 1))
  echo "tick $n from ${DYNO:-worker.1}"
  sleep "${INTERVAL:-5}"
done
