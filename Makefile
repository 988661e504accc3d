# make setup | make demo | make test | make bench | make notebook
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv pip install --python $(PY) --quiet --compile-bytecode
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast test-readme bench notebook clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==0.13.9
	$(UV) -r requirements.txt -r requirements-dev.txt
	$(UV) --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/uv pip install --python $(PY) --quiet --no-deps -e .
	$(PY) -c "import maskdetect, object_detection.model_lib_v2"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/maskdetect demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=25

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow"

# the README's other training lines as written with fewer steps, and `make demo` (~36 min; not in `make test`)
test-readme: setup
	MASKDETECT_FULL_README=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_readme.py -k \
	    "test_every_training_line_runs_verbatim_with_fewer_steps or test_make_demo_runs_as_written"

# Jupyter Lab on the notebooks, from this venv (its kernel is this venv's Python); JUPYTER_ARGS adds options
notebook: setup
	$(VENV)/bin/jupyter lab notebooks/ $(JUPYTER_ARGS)

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf workspace/runs/demo .pytest_cache
