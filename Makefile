# Each target sets up .venv itself, so a fresh clone needs nothing but python3.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench clean lint format

# Bytecode is compiled once here, also where PYTHONDONTWRITEBYTECODE is set: Python still reads
# .pyc files then, and without them every process parses numba's sources again (~1 s each).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null
	touch $(STAMP)

# The MQTT tests need mosquitto, the Spark tests Java and the [spark] extra (.ci/run installs them);
# without them they skip, or fail when CI is set.
test: $(STAMP)
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || test -n "$$MOSQUITTO_BIN" || \
		echo "note: mosquitto not installed, the MQTT tests will skip (fail if CI is set; apt-get install mosquitto)"
	@command -v java >/dev/null 2>&1 || test -x "$$JAVA_HOME/bin/java" || \
		echo "note: java not installed, the Spark tests will skip (fail if CI is set; apt-get install openjdk-17-jre-headless)"
	@$(PY) -c "import pyspark, pandas" 2>/dev/null || \
		echo "note: the [spark] extra is not installed, the Spark tests will skip (fail if CI is set; $(PY) -m pip install -e '.[spark]')"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q decoder >/dev/null
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) samples/demo.py

bench: $(STAMP)
	$(PY) benchmarks/compare_decode.py

.PHONY: bench-stream
bench-stream: $(STAMP)
	$(PY) benchmarks/bench_stream.py

.PHONY: bench-serve
bench-serve: $(STAMP)
	$(PY) benchmarks/bench_serve.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

.PHONY: bench-spark
bench-spark: $(STAMP)
	$(PY) benchmarks/bench_spark.py
