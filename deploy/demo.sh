#!/usr/bin/env bash
# `make demo`: start the local Kafka broker, check every component, and send CDR-shaped records
# through a topic and back with Spark's Kafka connector.
set -euo pipefail
cd "$(dirname "$0")/.."
SIMGUARD=.venv/bin/simguard
$SIMGUARD kafka up
$SIMGUARD doctor
$SIMGUARD kafka roundtrip --records 1000
echo
echo "Kafka keeps running at the address above; stop it with: make kafka-down"
