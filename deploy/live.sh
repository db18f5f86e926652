#!/usr/bin/env bash
# `make live`: the stream as a carrier runs it, watched from an operator's seat.
#
#   Kafka up -> simulate a larger population -> champions (the demo's, or trained here) ->
#   the history the replay continues (`simguard live-history`: the day before and the test day
#   up to the start, moved to end now) -> `simguard stream --warm-from` it, live in the background
#   (it creates its topics) -> the test day replayed at real time from now (event time = wall
#   time) -> `simguard blocklist watch` prints each block as it reaches the operator's Kafka
#   topic, with its latency and the calls before it.
#
# Bounded: the replay runs LIVE_MINUTES (default 10), the watch LIVE_DRAIN_S (default 90) more;
# then, or on Ctrl-C, everything this script started is stopped (the stream by SIGTERM: its
# queries stop at a micro-batch boundary, offsets committed). Settings (environment):
#   LIVE_SUBSCRIBERS (20000)  LIVE_SEED (7)  LIVE_MINUTES (10)  LIVE_OPERATOR (viettel)
#   LIVE_START (now: the test day from the current UTC time of day, so timestamps move by whole
#     days and time-of-day features stay true; or HH:MM UTC, e.g. 03:00 = 10:00 in Vietnam)
#   LIVE_SPEED (1: real time; above 1 squeezes the day's gaps, and per-hour features with them)
#   LIVE_TRAIN (0: reuse the demo's champions when `make demo` left them; 1: train here)
#   LIVE_WARM (1: the stream starts with the history in its state, as a job that had been running;
#     0: cold, and ordinary SIMs' first calls of the day look like a SIM box's)
# Everything it writes is under .simguard/live and in Kafka topics simguard.live.*.
set -euo pipefail
cd "$(dirname "$0")/.."
SIMGUARD=.venv/bin/simguard
LIVE=.simguard/live
DEMO=.simguard/demo
SUBSCRIBERS=${LIVE_SUBSCRIBERS:-20000}
SEED=${LIVE_SEED:-7}
MINUTES=${LIVE_MINUTES:-10}
DRAIN_S=${LIVE_DRAIN_S:-90}
OPERATOR=${LIVE_OPERATOR:-viettel}
START=${LIVE_START:-now}
SPEED=${LIVE_SPEED:-1}
TRAIN=${LIVE_TRAIN:-0}
WARM=${LIVE_WARM:-1}

STREAM_PID=
REPLAY_PID=
stop_all() {
  trap - EXIT INT TERM
  if [ -n "$REPLAY_PID" ] && kill -0 "$REPLAY_PID" 2>/dev/null; then
    kill -TERM "$REPLAY_PID" 2>/dev/null || true
    wait "$REPLAY_PID" 2>/dev/null || true
  fi
  if [ -n "$STREAM_PID" ] && kill -0 "$STREAM_PID" 2>/dev/null; then
    echo "stopping the stream (SIGTERM)"
    kill -TERM "$STREAM_PID" 2>/dev/null || true
    wait "$STREAM_PID" 2>/dev/null || true
    grep -h "simguard stream stopped" "$LIVE/stream.log" || tail -n 5 "$LIVE/stream.log"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

printf '\n== Kafka\n'
$SIMGUARD kafka up
$SIMGUARD kafka delete-topics --prefix simguard.live.
mkdir -p "$LIVE"
rm -rf "$LIVE/stream" "$LIVE/simguard.db" "$LIVE/history"

{
export -p | grep -E '^declare -x SIMGUARD_' | grep -v -E '^declare -x SIMGUARD_(HOME|KAFKA__TOPICS__|STREAM__METRICS_PORT|BLOCKLIST__REGISTERED_BUSINESSES|MLFLOW__)' || true
cat <<EOF
export SIMGUARD_HOME=$PWD/$LIVE
export SIMGUARD_KAFKA__TOPICS__CDRS=simguard.live.cdrs
export SIMGUARD_KAFKA__TOPICS__DEAD_LETTER=simguard.live.cdrs.dead-letter
export SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX=simguard.live.blocklist
export SIMGUARD_STREAM__METRICS_PORT=0
export SIMGUARD_BLOCKLIST__REGISTERED_BUSINESSES=$PWD/$LIVE/sim/labels/registered_businesses.parquet
EOF
} > "$LIVE/env"
# shellcheck source=/dev/null
source "$LIVE/env"

printf '\n== Simulate %s subscribers x 3 days (seed %s)\n' "$SUBSCRIBERS" "$SEED"
if [ "$(cat "$LIVE/sim.stamp" 2>/dev/null)" = "$SUBSCRIBERS $SEED" ]; then
  echo "reusing $LIVE/sim"
else
  $SIMGUARD simulate --subscribers "$SUBSCRIBERS" --days 3 --seed "$SEED" --out "$LIVE/sim"
  echo "$SUBSCRIBERS $SEED" > "$LIVE/sim.stamp"
fi

printf '\n== Champion models\n'
if [ "$TRAIN" != 1 ] && [ -f "$DEMO/mlflow/mlflow.db" ]; then
  echo "reusing the champions \`make demo\` registered in $DEMO/mlflow (LIVE_TRAIN=1 trains on this population)"
  echo "export SIMGUARD_MLFLOW__TRACKING_URI=sqlite:///$PWD/$DEMO/mlflow/mlflow.db" >> "$LIVE/env"
  source "$LIVE/env"
elif [ "$(cat "$LIVE/models.stamp" 2>/dev/null)" = "$SUBSCRIBERS $SEED" ]; then
  echo "reusing the champions trained on this population in $LIVE/mlflow"
else
  $SIMGUARD train --cdrs "$LIVE/sim/cdrs" --labels "$LIVE/sim/labels" 2> >(grep --line-buffered -v -e ' WARN ' -e '^WARNING' >&2)
  echo "$SUBSCRIBERS $SEED" > "$LIVE/models.stamp"
fi

# one start time for the history and the replay (now: the current UTC time of day)
if [ "$START" = now ]; then START=$(date -u +%H:%M:%S); fi
WARM_FROM=()
if [ "$WARM" = 1 ]; then
  printf '\n== The history the replay continues (the test day before %s UTC, and the day before)\n' "$START"
  $SIMGUARD live-history "$LIVE/sim" --start-at "$START" --out "$LIVE/history"
  WARM_FROM=(--warm-from "$LIVE/history")
fi

printf '\n== simguard stream, live, in the background (log: %s/stream.log)\n' "$LIVE"
$SIMGUARD stream "${WARM_FROM[@]}" > "$LIVE/stream.json" 2> "$LIVE/stream.log" &
STREAM_PID=$!
for _ in $(seq 600); do  # up to 5 min: Spark starts slowly on a busy machine
  grep -q -e "created Kafka topic" -e "waiting for Kafka topic" "$LIVE/stream.log" 2>/dev/null && break
  kill -0 "$STREAM_PID" 2>/dev/null || { tail -n 30 "$LIVE/stream.log" >&2; exit 1; }
  sleep 0.5
done
grep -h -e "created Kafka topic" -e "waiting for Kafka topic" "$LIVE/stream.log" || true
if [ "$WARM" = 1 ]; then echo "(the stream loads the history into its state, then reads the replay's CDRs from where they began)"; fi

printf '\n== Replay the test day live for %s min (log: %s/replay.log)\n' "$MINUTES" "$LIVE"
$SIMGUARD replay "$LIVE/sim" --last-days 1 --shift-to-now --start-at "$START" --speed "$SPEED" \
  --duration "$((MINUTES * 60))" > "$LIVE/replay.log" 2>&1 &
REPLAY_PID=$!
sleep 1
head -n 1 "$LIVE/replay.log" || true

printf '\n== Blocks as they reach %s.%s\n' "$SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX" "$OPERATOR"
$SIMGUARD blocklist watch --operator "$OPERATOR" --from-beginning --for-seconds "$((MINUTES * 60 + DRAIN_S))"
if [ -n "$REPLAY_PID" ]; then wait "$REPLAY_PID" 2>/dev/null || true; fi
grep -h "^replayed" "$LIVE/replay.log" || true
stop_all
echo "Everything the live run wrote is under $LIVE; to explore it with the CLI: source $LIVE/env"
