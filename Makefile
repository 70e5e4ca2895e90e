# emotune: `make demo` sets up .venv and runs the demo; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.emotune/numba

.PHONY: venv demo test lint typecheck bench clean browser figures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/emotune demo $(if $(DATA),--data $(DATA),)

lint: $(STAMP)
	$(BIN)/ruff check features spaces search tests benchmarks
	$(BIN)/ruff format --check features spaces search tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy features spaces search

# Debian's Chromium, for the browser tests (dashboard, HTML reports); installed once when missing.
browser:
	@command -v chromium >/dev/null || { apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }

test: lint typecheck browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The README's pictures (docs/*.png), drawn by the commands themselves from the synthetic corpus:
# plot, explore, two short searches, an ensemble and its report. Storage: $$EMOTUNE_STORAGE, else
# the embedded PostgreSQL. The PNGs are reduced to 256 colours to stay small in the repository.
# Nothing is deleted first: each command writes only into a new folder or its own earlier output
# (a marker file, a model directory's manifest), so a run refreshes the last one and a folder that
# is not emotune's is refused, not wiped.
FIGS := .emotune/figures
DOC_FIGS := waveform spectrogram_linear spectrogram_db spectrum_loudest_frame spectral_envelope mfcc
figures: $(STAMP)
	mkdir -p $(FIGS) docs
	$(BIN)/emotune corpus synth $(FIGS)/synth --actors 4 --seed 0
	$(BIN)/emotune plot $(FIGS)/synth/Actor_01/03-01-05-02-01-01-01.wav --out $(FIGS)/plot
	$(BIN)/emotune explore $(FIGS)/synth --out $(FIGS)/explore
	for s in knn logreg; do \
	  $(BIN)/emotune studies delete figures-$$s >/dev/null 2>&1; \
	  $(BIN)/emotune search $$s --study figures-$$s --data $(FIGS)/synth --trials 30 --workers 2 || exit 1; \
	done
	$(BIN)/emotune ensemble figures-knn figures-logreg --out $(FIGS)/model --force
	$(BIN)/emotune report $(FIGS)/model --out $(FIGS)/report.html --png-dir $(FIGS)/report
	for f in $(DOC_FIGS); do cp $(FIGS)/plot/$$f.png docs/plot_$$f.png; done
	cp $(FIGS)/explore/pca_kmeans.png docs/explore_pca_kmeans.png
	cp $(FIGS)/explore/class_counts.png docs/explore_class_counts.png
	cp $(FIGS)/report/optimisation_history_of_figures_knn.png docs/report_optimisation_history.png
	cp $(FIGS)/report/parameter_importances_of_figures_knn.png docs/report_parameter_importances.png
	cp $(FIGS)/report/pruned_and_complete_trials_of_figures_knn.png docs/report_pruned_by_step.png
	cp $(FIGS)/report/confusion_matrix_of_the_voter.png docs/report_confusion_voter.png
	cp $(FIGS)/report/per_class_recall.png docs/report_per_class_recall.png
	cp $(FIGS)/report/voter_weights.png docs/report_voter_weights.png
	$(BIN)/python -c "import sys; from PIL import Image; \
	  [Image.open(p).convert('RGB').quantize(256).save(p, optimize=True) for p in sys.argv[1:]]" docs/*.png
	@echo "docs/: $$(ls docs/*.png | wc -l) figures; the whole page: $(FIGS)/report.html"

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/deep.py

clean:
	rm -rf $(VENV) .emotune .pytest_cache .mypy_cache .ruff_cache
