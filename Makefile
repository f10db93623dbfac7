# srft-megatron: set up, test and demo. Every target refreshes the virtual environment first.
#   make setup   create/refresh .venv (Python 3.12, pinned by requirements.lock)
#   make demo    the whole SRFT pipeline on the bundled example, on CPU
#   make test    the test suite (CPU; GPU tests are marked and skipped)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test demo bench bench-label bench-train clean-venv lock

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/setup_venv.sh
	bash scripts/setup_venv.sh $(VENV)
	touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/srft demo $(if $(CRITIC),--critic,) $(DEMO_ARGS)

# Speed tables (not tests): preprocess vs plain tokenisation; critic client on local vLLM
# replicas (builds .venv-vllm, starts two CPU servers); trainer throughput (GPU machine).
bench: setup
	$(PY) bench/preprocess.py

bench-label: setup
	$(PY) bench/label.py

bench-train: setup
	$(PY) bench/train.py

# Re-resolve the pinned set after changing pyproject.toml's dependencies.
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^srft-megatron' > requirements.lock

clean-venv:
	rm -rf $(VENV)
