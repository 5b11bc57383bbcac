# gridlake — every target does its own set-up from a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JVM := .jvm
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: setup jars test lint demo bench-stream chaos clean

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

test: setup lint
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider

demo: setup
	$(BIN)/gridlake demo

bench-stream: setup
	$(BIN)/python -m benchmarks.bench_stream

chaos: setup
	$(BIN)/python -m pytest -m slow tests/streaming -p no:cacheprovider

clean:
	rm -rf $(VENV) $(JVM) lake demo
