# Each target sets up .venv itself, so a fresh clone needs nothing but python3.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) samples/demo.py

bench: $(STAMP)
	$(PY) benchmarks/compare_decode.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
