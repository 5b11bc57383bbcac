# gridlake — every target does its own set-up from a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JVM := .jvm
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: setup jars test test-long lint demo bench bench-stream bench-batch bench-microbatch bench-checkpoints bench-vacuum notebooks lab chaos clean

setup: $(VENV)/.installed jars

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# JVM jars (Delta, Kafka connector, S3A, the Kafka broker) fetched once by Maven; offline after.
jars: $(JVM)/.fetched

$(JVM)/.fetched: pom.xml jvm/spark/pom.xml jvm/kafka-broker/pom.xml
	rm -rf $(JVM)/spark $(JVM)/kafka-broker
	mvn --batch-mode --quiet package -Dmaven.repo.local=$(abspath $(JVM))/m2
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .

# The slowest tests are listed at the end, to keep the run inside its time budget.
test: setup lint
	$(BIN)/python -m pytest -m "not slow and not cluster and not long" -p no:cacheprovider --durations=15

# End-to-end runs too long for make test (the GDPR erasure with its vacuums and byte scan,
# a stream replay right after the silver MERGE and one after a vacuum, lineage after a vacuum,
# compaction after a streamed run, `gridlake demo` run twice).
test-long: setup
	$(BIN)/python -m pytest -m long -p no:cacheprovider

# The same jobs on a Spark standalone cluster and on an S3-compatible server (both started by
# the tests' fixtures, on 127.0.0.1).
test-cluster: setup
	$(BIN)/python -m pytest -m cluster -p no:cacheprovider

demo: setup
	$(BIN)/gridlake demo

# Every benchmark side by side in one run: benchmarks/results/latest.json and latest.md (hours).
bench: setup
	$(BIN)/python -m benchmarks.bench

bench-stream: setup
	$(BIN)/python -m benchmarks.bench_stream

bench-batch: setup
	$(BIN)/python -m benchmarks.bench_batch

# The fixed cost of small micro-batches: Spark's default code cache against gridlake's session.
bench-microbatch: setup
	$(BIN)/python -m benchmarks.bench_microbatch

bench-checkpoints: setup
	$(BIN)/python -m benchmarks.bench_checkpoints

# VACUUM (and forget) with Delta's default listing parallelism against gridlake's session.
bench-vacuum: setup
	$(BIN)/python -m benchmarks.bench_vacuum

# The analyst notebooks, executed against $(GRIDLAKE_LAKE) (the demo lake unless set; made
# first when missing); executed copies with their plots go to notebooks/executed/ (git-ignored).
notebooks: setup
	@test -f $(GRIDLAKE_LAKE)/_gridlake/lake.json || $(BIN)/gridlake demo
	GRIDLAKE_LAKE=$(abspath $(GRIDLAKE_LAKE)) MPLBACKEND=Agg $(BIN)/jupyter nbconvert --to notebook \
	  --execute --ExecutePreprocessor.timeout=900 --output-dir notebooks/executed notebooks/*.ipynb

# Jupyter Lab on 127.0.0.1 with the notebooks, against $(GRIDLAKE_LAKE).
lab: setup
	GRIDLAKE_LAKE=$(abspath $(GRIDLAKE_LAKE)) $(BIN)/jupyter lab --ip 127.0.0.1 --no-browser notebooks

# Fault injection (long): random and named kill -9 points of the stream, writers at once.
chaos: setup
	$(BIN)/python -m pytest -m "slow or chaos" -p no:cacheprovider

clean:
	rm -rf $(VENV) $(JVM) lake demo

# A Spark standalone master and $(CLUSTER_WORKERS) workers on 127.0.0.1 (free ports), from
# pyspark's own distribution, until Ctrl-C; it prints the GRIDLAKE_SPARK_MASTER to export.
.PHONY: cluster test-cluster
CLUSTER_WORKERS ?= 2
cluster: setup
	$(BIN)/gridlake cluster-dev --workers $(CLUSTER_WORKERS) --cores 1 --memory 1g

# Dagster UI: webserver + daemon on 127.0.0.1:$(DAGSTER_PORT), instance state in .dagster_home/
# (git-ignored), against $(GRIDLAKE_LAKE) (default: the demo lake). Ctrl-C stops both.
.PHONY: ui
DAGSTER_PORT ?= 3000
GRIDLAKE_LAKE ?= demo/lake
ui: setup
	@mkdir -p .dagster_home
	@test -f .dagster_home/dagster.yaml || printf 'telemetry:\n  enabled: false\nnux:\n  enabled: false\n' > .dagster_home/dagster.yaml
	@test -d "$(GRIDLAKE_LAKE)" || echo "make ui: no lake at $(GRIDLAKE_LAKE) yet: run \`make demo\` or set GRIDLAKE_LAKE=DIR"
	DAGSTER_HOME=$(abspath .dagster_home) $(BIN)/dagster instance migrate >/dev/null
	DAGSTER_HOME=$(abspath .dagster_home) GRIDLAKE_LAKE=$(abspath $(GRIDLAKE_LAKE)) sh -c '\
	  $(BIN)/dagster-daemon run & daemon=$$!; trap "kill $$daemon 2>/dev/null" EXIT INT TERM; \
	  $(BIN)/dagster-webserver -h 127.0.0.1 -p $(DAGSTER_PORT)'
