#!/usr/bin/env bash
# Makes sure the tools SIMGuard needs are present: Java 17+ (Kafka 4, Spark 4), Maven (fetches
# the broker and the Spark Kafka connector from Maven Central) and PostgreSQL's server binaries
# (the test session starts its own server, tests/pgserver.py), and Chromium (the console's browser
# test drives Debian's build through Playwright; no browser is downloaded). Installs them from Debian's
# packages when missing and we are root; otherwise says what to install.
set -euo pipefail
need=()
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  need+=(openjdk-17-jdk-headless)  # javac too: bench/bench_state.py compiles a Spark processor
fi
if command -v java >/dev/null 2>&1; then
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  if [ "${major:-0}" -lt 17 ]; then
    echo "error: Java ${major} found, SIMGuard needs Java 17 or later (set JAVA_HOME or PATH)" >&2
    exit 1
  fi
fi
command -v mvn >/dev/null 2>&1 || need+=(maven)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "error: missing ${need[*]}: install them (e.g. sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
