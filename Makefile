# Fresh-machine entry points. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/lite.yaml
TRIALS ?= 8
DATA ?=
DEMO_DATA := artifacts/demo/train.csv
DEMO_TEST := artifacts/demo/test.csv
TRAIN_DATA := $(if $(DATA),$(DATA),$(DEMO_DATA))
PREDICT_DATA := $(if $(DATA),$(if $(TEST),$(TEST),$(DATA)),$(DEMO_TEST))
MODEL_DIR ?= artifacts/model
PREDICTIONS ?= artifacts/predictions.csv

SHARED ?= ../shared
OUT ?= artifacts/arena-model
TARGET ?= kaggle-lmsys
ARENA_TRIALS ?= 0
# The held-out estimate on the target (5 more fits); the transfer table of
# the unseen-source recipe is the benchmarks' transfer section.
ARENA_FLAGS ?= --target-estimate-folds 5 --no-transfer-report
ARENA_DATA := artifacts/arena-model-data/corpus.csv
CORPUS_FILES = $(sort $(wildcard $(SHARED)/data/corpus/*.csv))

.PHONY: setup demo test lint bench clean arena-model

# Joins CSV files by column name (a column one file lacks is left empty), text kept as written.
define JOIN_CSVS
import sys, pandas as pd
frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in sys.argv[2:]]
pd.concat(frames, ignore_index=True).fillna("").to_csv(sys.argv[1], index=False)
endef
export JOIN_CSVS

setup: $(VENV)/.installed

# torch first: the pinned version is a CPU build; any other spec pulls CUDA packages.
# constraints.txt holds the versions the test suite last passed with.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(DEMO_DATA): | setup
	$(PY) -m pipelines.make_demo_data --out $(DEMO_DATA)

$(DEMO_TEST): | setup
	$(PY) -m pipelines.make_demo_data --out $(DEMO_TEST) --n-rows 500 --seed 1 --test-layout

# DATA=train.csv [TEST=test.csv] runs the same job on your own Kaggle files.
demo: setup $(if $(DATA),,$(DEMO_DATA) $(DEMO_TEST))
	$(PY) -m pipelines.build_features --config $(CONFIG) --data $(TRAIN_DATA)
	$(PY) -m pipelines.train_gbdt --config $(CONFIG) --data $(TRAIN_DATA) --trials $(TRIALS) --out $(MODEL_DIR)
	$(PY) -m pipelines.predict --config $(CONFIG) --model $(MODEL_DIR) --data $(PREDICT_DATA) --out $(PREDICTIONS)

# The model users get: every corpus file in training, predicting for the Kaggle
# arena voters (training.target; docs/target.md). The files are joined by column
# name under artifacts/ (never committed), their text kept as written.
arena-model: setup
	@test -n "$(CORPUS_FILES)" || { echo "no $(SHARED)/data/corpus/*.csv; set SHARED=path/to/shared" >&2; exit 2; }
	mkdir -p $(dir $(ARENA_DATA))
	$(PY) -c "$$JOIN_CSVS" $(ARENA_DATA) $(CORPUS_FILES)
	$(PY) -m pipelines.train_gbdt --config $(CONFIG) --data $(ARENA_DATA) --target $(TARGET) --trials $(ARENA_TRIALS) --out $(OUT) $(ARENA_FLAGS)

test: setup
	$(PY) -m pytest -q -ra

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The ONNX engines and the py-spy profiler of missed targets come with the bench extra.
bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m benchmarks.run

clean:
	rm -rf artifacts .pytest_cache
