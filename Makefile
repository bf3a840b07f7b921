# The two commands in the README: `make demo` (set up, then run the main job) and `make test` (set up, then test).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench setup clean
demo: $(VENV)/.installed
	$(BIN)/labelsieve run configs/demo.json

test: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/runtime_overhead.py

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.sh
	./setup.sh test
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
