# make demo: generate data, train the quick recipe, infer, score.  make test: the whole pytest suite.
# make test-fast: the suite without the end-to-end training tests (about 2 minutes on 2 cores).
# Both run one pytest worker per core (pytest-xdist); tests/conftest.py gives each worker its share of the cores.
# PYTHON=/path/to/python make test  uses that interpreter (a conda env) instead of creating .venv.
PYTHON ?= .venv/bin/python
DEMO_DATA ?= data/synthetic
# worksteal: an idle worker takes queued tests from a busy one, so one long test does not hold back the rest
PARALLEL ?= -n auto --dist worksteal

.PHONY: demo test test-fast venv clean-demo

venv: $(if $(filter .venv/bin/python,$(PYTHON)),.venv/.installed)

.venv/.installed: requirements.txt requirements-nodeps.txt
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install -q -r requirements.txt
	.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

test: venv
	$(PYTHON) -m pytest -q $(PARALLEL)

test-fast: venv
	@start=$$(date +%s); $(PYTHON) -m pytest -q $(PARALLEL) -m "not slow"; rc=$$?; \
	  echo "test-fast: $$(( $$(date +%s) - start )) s"; exit $$rc

demo: venv
	$(PYTHON) -m tools.demo --data_dir $(DEMO_DATA)

clean-demo:
	rm -rf $(DEMO_DATA) logs/demo
