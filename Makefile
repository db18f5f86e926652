# SIMGuard: `make demo` and `make test` each work on a fresh machine; both run `setup` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SIMGUARD := $(VENV)/bin/simguard
JARS := .simguard/jars
MVN := mvn -q -B -U -s deploy/jvm/settings.xml

.PHONY: setup jars kafka-up kafka-down kafka-status demo live test test-fast bench lint clean

setup: $(VENV)/.installed jars $(JARS)/simguard/simguard-features.jar

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	@bash deploy/ensure-tools.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The broker's jars, and Spark's Kafka connector at exactly the installed pyspark version
# (read when the recipe runs, after pip has installed what setup.cfg pins).
jars: $(JARS)/kafka/.fetched $(VENV)/.installed
	@v=$$($(PY) -c 'import pyspark; print(pyspark.__version__)')-$$(sha1sum deploy/jvm/spark-kafka/pom.xml | cut -c1-8); \
	if [ ! -f $(JARS)/spark-kafka/.fetched-$$v ]; then \
	  echo "fetching spark-sql-kafka-0-10_2.13 and Delta Lake ($$v) from Maven Central"; \
	  rm -rf $(JARS)/spark-kafka && \
	  $(MVN) -f deploy/jvm/spark-kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -Dspark.version=$${v%%-*} -DoutputDirectory=$(abspath $(JARS)/spark-kafka) && \
	  touch $(JARS)/spark-kafka/.fetched-$$v; \
	fi

# The per-SIM features' state processor (features/jvm), compiled against the installed pyspark's
# own jars, so it always matches the Spark that runs it; build_spark ships it with spark.jars.
$(JARS)/simguard/simguard-features.jar: $(wildcard features/jvm/*.java) $(VENV)/.installed
	@bash deploy/ensure-tools.sh
	@rm -rf $(JARS)/simguard && mkdir -p $(JARS)/simguard/classes
	javac --release 17 -Xlint:-options -cp "$$($(PY) -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')/jars/*" \
	  -d $(JARS)/simguard/classes features/jvm/*.java
	jar cf $@ -C $(JARS)/simguard/classes simguard

$(JARS)/kafka/.fetched: deploy/jvm/kafka/pom.xml
	@bash deploy/ensure-tools.sh
	rm -rf $(JARS)/kafka
	$(MVN) -f deploy/jvm/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(JARS)/kafka)
	@touch $@

kafka-up: setup
	$(SIMGUARD) kafka up

kafka-down:
	@if [ -x $(SIMGUARD) ]; then $(SIMGUARD) kafka down; else echo "nothing to stop"; fi

kafka-status: setup
	$(SIMGUARD) kafka status

demo: setup
	bash deploy/demo.sh

# the stream live: a larger simulation's test day replayed at real time, blocks printed as they
# reach an operator's topic (LIVE_MINUTES, LIVE_SUBSCRIBERS, ...: deploy/live.sh)
live: setup
	bash deploy/live.sh

# the whole suite: the session starts (and stops) its own Kafka broker and PostgreSQL server
test: setup
	$(VENV)/bin/pytest -q --durations=15

# the development loop: without the slow tests and those that need the Kafka broker
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow and not kafka"

bench: setup
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check pipeline features models streaming tests bench

clean:
	rm -rf .simguard/kafka .simguard/mlflow .simguard/simguard.db .simguard/demo
