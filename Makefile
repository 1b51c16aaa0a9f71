# `make demo` and `make test` each build .venv when it is missing (or pyproject.toml changed).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# This pair is served from the local disk; installing it first keeps pip from fetching another torch.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stable-reinforce demo $(DEMO_ARGS)

# Two pytest-xdist workers, one per core of the CI machine. Each file runs whole on one worker (--dist loadfile), so
# a module's costly fixtures (test_recipes.py's documented CPU run: ~2 min of training) are built once.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) outputs .pytest_cache
