#!/usr/bin/env bash
# `make demo`: the whole story on one machine, in a few minutes.
#
#   Kafka up -> simulate labelled traffic -> train and register both models -> replay the last
#   simulated day into the CDR topic -> `simguard stream --available-now` (validation, features,
#   champions, policy, blocklist store) -> publish and export the blocklists -> a report against
#   the simulator's ground truth -> the regulator's audit (log verified, report with pseudonyms).
#
# Everything the demo writes lives under .simguard/demo (MLflow, blocklist database, stream
# checkpoints, the simulation, CSV exports) and in Kafka topics named simguard.demo.*; both are
# wiped at the start, so a rerun starts clean. The broker itself is the local one of
# `make kafka-up` (data under .simguard/kafka); it keeps running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
SIMGUARD=.venv/bin/simguard
DEMO=.simguard/demo
# About 25 minutes on the shared 2-core machine once `make setup` has run (features and training
# most of it; BENCHMARKS.md); any size works (see BENCHMARKS.md for 100k).
SUBSCRIBERS=${DEMO_SUBSCRIBERS:-4000}
DAYS=3
SEED=${DEMO_SEED:-7}

# `step KEY "title"`: starts a step; the wall time of each is printed at the end
TIMES=()
STEP_KEY=
STEP_START=$SECONDS
step() {
  [ -z "$STEP_KEY" ] || TIMES+=("$STEP_KEY $((SECONDS - STEP_START)) s")
  STEP_KEY=$1
  STEP_START=$SECONDS
  printf '\n== %s\n' "$2"
}

step kafka "Kafka"
$SIMGUARD kafka up
$SIMGUARD kafka delete-topics --prefix simguard.demo.
rm -rf "$DEMO"
mkdir -p "$DEMO"

# The demo's settings, as environment overrides (configs/default.yaml stays as it is). Kept in a
# file so that the commands the report suggests can use them: (source .simguard/demo/env && ...).
#
# Event times: the simulation is dated from configs/simulator.yaml's start_date (2025-03-03),
# and the stream dead-letters records older than stream.validation.max_past_days (today minus
# N days). The demo is a backfill of old CDRs, so it widens that limit for this run, as an
# operator would for a backfill. The alternative, replaying with a whole-day shift so that the
# last simulated day becomes yesterday, would move the CDRs but not the labels (fraud activity
# start times, registration dates) nor the days the models were validated on; the report judges
# the stream against the labels, so the demo keeps every timestamp as simulated.
#
# GET /blocklist answers only callers with an operator's token, and none is configured by
# default: the demo makes one for viettel, new on every run and kept only in this file, so that
# the report's curl works (`simguard serve` binds 127.0.0.1).
#
# SIMGUARD_* overrides the demo was started with (other broker ports, say) are kept in it too.
{
export -p | grep -E '^declare -x SIMGUARD_' | grep -v -E '^declare -x SIMGUARD_(HOME|KAFKA__TOPICS__|STREAM__VALIDATION__MAX_PAST_DAYS|STREAM__METRICS_PORT|BLOCKLIST__REGISTERED_BUSINESSES|AUDIT__PSEUDONYM_KEY)' || true
cat <<EOF
export SIMGUARD_HOME=$PWD/$DEMO
export SIMGUARD_KAFKA__TOPICS__CDRS=simguard.demo.cdrs
export SIMGUARD_KAFKA__TOPICS__DEAD_LETTER=simguard.demo.cdrs.dead-letter
export SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX=simguard.demo.blocklist
export SIMGUARD_STREAM__VALIDATION__MAX_PAST_DAYS=36500
export SIMGUARD_STREAM__METRICS_PORT=0
export SIMGUARD_BLOCKLIST__REGISTERED_BUSINESSES=$PWD/$DEMO/sim/labels/registered_businesses.parquet
export SIMGUARD_BLOCKLIST__OPERATORS__VIETTEL__API_TOKEN=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')
export SIMGUARD_AUDIT__PSEUDONYM_KEY=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')
EOF
} > "$DEMO/env"
chmod 600 "$DEMO/env"  # it holds the token
# shellcheck source=/dev/null
source "$DEMO/env"

step simulate "Simulate $SUBSCRIBERS subscribers x $DAYS days (seed $SEED), with ground-truth labels"
$SIMGUARD simulate --subscribers "$SUBSCRIBERS" --days "$DAYS" --seed "$SEED" --out "$DEMO/sim"

# train splits by day: fit on day 1, early stopping and thresholds on day 2, test on day 3; the
# last day is the one streamed below, so the models are judged on traffic they never fitted.
step train "Train both models and register them in MLflow (champion alias)"
$SIMGUARD train --cdrs "$DEMO/sim/cdrs" --labels "$DEMO/sim/labels" 2> >(grep --line-buffered -v -e ' WARN ' -e '^WARNING' >&2)

step replay "Replay the last day into Kafka topic $SIMGUARD_KAFKA__TOPICS__CDRS"
$SIMGUARD replay "$DEMO/sim" --last-days 1

# The day before the streamed one is loaded into the stream's state first, as a carrier starting
# the job would from its CDR archive: a cold state scores the day's first calls with no history,
# and ordinary SIMs' first calls (nothing incoming yet, a busy cell) look like a SIM box's.
WARM_DAY=$(ls -d "$DEMO"/sim/cdrs/day=* | sort | tail -n 2 | head -n 1)
step stream "Stream it: validation, features, champion models, policy, blocklist store"
echo "state warmed with ${WARM_DAY##*/}, then a backfill of the last day; progress in $DEMO/stream.log"
if ! $SIMGUARD stream --available-now --warm-from "$WARM_DAY" > "$DEMO/stream.json" 2> "$DEMO/stream.log"; then
  tail -n 40 "$DEMO/stream.log" >&2
  exit 1
fi
echo "done; its totals are in $DEMO/stream.json"

step publish "Publish the blocklists (Kafka topics) and export them as CSV"
$SIMGUARD blocklist publish
$SIMGUARD blocklist export --operator all --out "$DEMO/export"

step report "Report: the streamed day (the models never fitted it) against the simulator's ground truth"
$SIMGUARD report --labels "$DEMO/sim/labels" --cdrs "$DEMO/sim" --last-days 1 --csv-dir "$DEMO/export" \
  --env-file "$DEMO/env"
step console "Console accounts: an analyst and a regulator"
# passwords made here and kept only in the env file (mode 0600)
CONSOLE_PASSWORD=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')
REGULATOR_PASSWORD=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(18))')
printf 'export DEMO_CONSOLE_USER=analyst\nexport DEMO_CONSOLE_PASSWORD=%s\n' "$CONSOLE_PASSWORD" >> "$DEMO/env"
printf 'export DEMO_REGULATOR_USER=regulator\nexport DEMO_REGULATOR_PASSWORD=%s\n' "$REGULATOR_PASSWORD" >> "$DEMO/env"
$SIMGUARD users add analyst --role analyst --password-file <(printf '%s\n' "$CONSOLE_PASSWORD")
$SIMGUARD users add regulator --role regulator --password-file <(printf '%s\n' "$REGULATOR_PASSWORD")
step audit "Regulator's audit: verify the hash-chained log, write the pseudonymised report"
$SIMGUARD audit verify
$SIMGUARD audit head
# decisions are stamped with the wall clock (the simulation is dated 2025): from its start to today
mkdir -p "$DEMO/audit"
REPORT="$DEMO/audit/report.html"
$SIMGUARD audit report --from 2025-01-01 --to "$(date -u +%F)" --out "$REPORT" --json
[ -s "$REPORT" ] || { echo "the regulator's report was not written to $REPORT" >&2; exit 1; }
step done "Done"
joined=$(printf '%s, ' "${TIMES[@]}")
echo "wall time $((SECONDS / 60)) min $((SECONDS % 60)) s (${joined%, })"
echo "Everything the demo wrote is under $DEMO; to explore it with the CLI: source $DEMO/env"
echo "Kafka keeps running (address above); stop it with: make kafka-down"
echo "Analyst console: (source $DEMO/env && $SIMGUARD console), then open http://127.0.0.1:8000 and sign in"
echo "  as 'analyst' with the password in $DEMO/env (DEMO_CONSOLE_PASSWORD); the regulator's pages (/regulator)"
echo "  as 'regulator' (DEMO_REGULATOR_PASSWORD)"
echo "Regulator's report (one self-contained file, open it in a browser): $PWD/$REPORT (JSON: $PWD/${REPORT%.html}.json)"
