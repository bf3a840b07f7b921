# The two commands in the README: `make demo` (set up, then run the main job) and `make test` (set up, then test).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench setup module clean
demo: $(VENV)/.installed
	$(BIN)/labelsieve demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/runtime_overhead.py

setup: $(VENV)/.installed

# The registry package (meta.json's build): what git tracks of the manifest, the modules and the package, nothing
# machine-specific (no .venv, .git or caches). first_run (setup.sh) builds the .venv where it is unpacked.
module: module.tar.gz
module.tar.gz: $(shell git ls-files meta.json setup.sh pyproject.toml README.md modules src)
	tar czf $@ $^

$(VENV)/.installed: pyproject.toml setup.sh
	./setup.sh test
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache module.tar.gz
