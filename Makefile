# Two commands: `make lab` opens the course, `make test` runs every test.
# Both create .venv when missing and only reinstall when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
STAMP_DEV := $(VENV)/.installed-dev
NOTEBOOKS := $(wildcard notebooks/[0-9]*.ipynb)
# JupyterLab refuses to run as root without --allow-root (containers, CI)
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: lab test lint bench notebooks portability mutation slides fetch clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUN): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(STAMP_TEST): $(STAMP_RUN)
	$(PIP) -e '.[test]'
	touch $@

$(STAMP_DEV): $(STAMP_TEST)
	$(PIP) -e '.[test,dev]'
	touch $@

# notebooks/ holds the course only (its build inputs live in tools/notebooks); the file browser
# also hides Python caches and Jupyter's checkpoints.
LAB_HIDE := $(foreach g,__pycache__ *.pyc .ipynb_checkpoints,--ContentsManager.hide_globs='$(g)')

lab: $(STAMP_RUN)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ROOT) $(LAB_HIDE) $(LAB_ARGS)

# nbval runs twice: with this CPU's own SIMD kernels and with torch's portable ones
# (ATEN_CPU_CAPABILITY=default), so checked outputs that hold on one CPU only fail here.
# Each notebook runs one-threaded in its own kernel; NBVAL_WORKERS notebooks run at once
# (pytest-xdist, one file per worker), the slowest (04) first so the workers finish together.
NBVAL_WORKERS ?= 2
NBVAL := $(BIN)/python -m pytest --nbval-lax --nbval-sanitize-with tools/nbval_sanitize.cfg \
	-p no:cacheprovider -n $(NBVAL_WORKERS) --dist loadfile
SLOWEST_NOTEBOOK := $(filter %04_beyond_gradcam.ipynb,$(NOTEBOOKS))
NBVAL_ORDER := $(SLOWEST_NOTEBOOK) $(filter-out $(SLOWEST_NOTEBOOK),$(NOTEBOOKS))
PORTABLE_KERNELS := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41

test: $(STAMP_TEST)
	$(BIN)/ruff check gradcam_edu tests benchmarks tools conftest.py
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)
ifneq ($(NOTEBOOKS),)
	@echo "nbval with this CPU's own kernels"
	$(NBVAL) $(NBVAL_ORDER) $(PYTEST_ARGS)
	@echo "nbval with torch's portable kernels ($(PORTABLE_KERNELS))"
	$(PORTABLE_KERNELS) $(NBVAL) $(NBVAL_ORDER) $(PYTEST_ARGS)
endif

# Rebuild and execute the notebooks from tools/notebooks (NB=01 for one of them; RECORD=1 also
# rewrites tools/notebooks/recorded.json, the tables the checked cells compare with; PROSE=1
# copies changed markdown into the executed notebooks without running them).
notebooks: $(STAMP_DEV)
	$(BIN)/python tools/build_notebooks.py $(NB) $(if $(RECORD),--record,) $(if $(PROSE),--prose,)

# How much the checked outputs move across kernel levels and thread counts (slow).
portability: $(STAMP_DEV)
	$(BIN)/python tools/checked_outputs.py

# reveal.js slides of every notebook, for lecturers: build/slides/*.slides.html.
# reveal.js, require.js, jQuery and MathJax come from npm into build/slides, so the decks work
# offline; the saved widget state is dropped, so each explorer shows its PNG snapshot.
SLIDES := build/slides
SLIDES_JS := reveal.js@4.6.0 requirejs@2.3.7 jquery@3.7.1 mathjax@2.7.9
slides: $(STAMP_RUN) $(SLIDES)/node_modules/.installed
	$(BIN)/jupyter nbconvert --to slides --output-dir $(SLIDES) \
		--SlidesExporter.reveal_url_prefix=node_modules/reveal.js --SlidesExporter.reveal_scroll=True \
		--SlidesExporter.require_js_url=node_modules/requirejs/require.js \
		--SlidesExporter.jquery_url=node_modules/jquery/dist/jquery.min.js \
		--SlidesExporter.mathjax_url='node_modules/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe' \
		--ClearMetadataPreprocessor.enabled=True --ClearMetadataPreprocessor.clear_cell_metadata=False \
		$(NOTEBOOKS)
	@echo "open $(SLIDES)/<notebook>.slides.html in a browser (arrow keys to move)"

$(SLIDES)/node_modules/.installed:
	mkdir -p $(SLIDES)
	cd $(SLIDES) && npm install --no-audit --no-fund --silent $(SLIDES_JS)
	touch $@

# Planted bugs, one at a time, each in a temporary copy of the package: do the tests catch
# them? (about 12 minutes, one process; MUTATION_ARGS="--only ID ..." or "--list")
mutation: $(STAMP_TEST)
	$(BIN)/python tools/mutation.py $(MUTATION_ARGS)

# Opt-in, the only target that downloads: torchvision's ImageNet weights into the torch cache
# (torch.hub.get_dir()/checkpoints), where torchvision_resnet(..., weights="imagenet") reads
# them. MODEL=resnet18 (default), resnet34 or resnet50; several: MODEL="resnet18 resnet50".
MODEL ?= resnet18
fetch: $(STAMP_RUN)
	$(BIN)/python -m gradcam_edu fetch $(MODEL)

lint: $(STAMP_TEST)
	$(BIN)/ruff check gradcam_edu tests benchmarks tools conftest.py

bench: $(STAMP_TEST)
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_scoreboard.py
	$(BIN)/python benchmarks/bench_faithfulness.py
	$(BIN)/python benchmarks/bench_scorecam.py
	$(BIN)/python benchmarks/bench_explorer.py --kernel
	$(BIN)/python benchmarks/bench_explorer_browser.py
	$(BIN)/python benchmarks/bench_claim_lab.py

clean-venv:
	rm -rf $(VENV)
