# The two commands in the README: `make demo` (set up, then run the main job) and `make test` (set up, then test).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench setup module training-script clean label-studio-venv
demo: $(VENV)/.installed
	$(BIN)/labelsieve demo

test: $(VENV)/.installed
	$(BIN)/ruff check src modules tests bench training_script
	$(BIN)/mypy
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
	rm -rf $(VENV) $(LABEL_STUDIO_VENV) .pytest_cache module.tar.gz training-script.tar.gz

# Viam custom training script (training_script/) as a source distribution: `viam training-script upload --path=training-script.tar.gz
# --framework=onnx --type=object_detection --org-id=... --script-name=...`.
training-script: training-script.tar.gz
training-script.tar.gz: $(shell git ls-files training_script)
	tar czf $@ --transform 's,^training_script,labelsieve-yolo-training-0.1.0,' $^

# Label Studio for the review round-trip test, in a venv of its own (it pins many packages): the package, and a data
# folder already migrated with a test user and API token, which the test copies (a fresh migration takes minutes).
LABEL_STUDIO_VENV ?= .venv-label-studio
label-studio-venv: $(LABEL_STUDIO_VENV)/template
$(LABEL_STUDIO_VENV)/template:
	test -x $(LABEL_STUDIO_VENV)/bin/pip || python3.11 -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/pip install -q label-studio label-studio-sdk
	rm -rf $@.tmp
	LABEL_STUDIO_BASE_DATA_DIR=$(abspath $@.tmp) DJANGO_DB=sqlite LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
	  $(LABEL_STUDIO_VENV)/bin/label-studio init labelsieve --username reviewer@labelsieve.local \
	  --password labelsieve-test --user-token labelsieve0test0token0000000000000000000 >/dev/null
	mv $@.tmp $@
