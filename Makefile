# make demo: generate data, train the quick recipe, infer, score.  make test: the pytest suite.
PY := .venv/bin/python
DEMO_DATA ?= data/synthetic

.PHONY: demo test venv clean-demo

venv: .venv/.installed

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) tools/demo.py --data_dir $(DEMO_DATA)

clean-demo:
	rm -rf $(DEMO_DATA) logs/demo
