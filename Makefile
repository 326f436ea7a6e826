# lit-colorization: every command of the project. `make help` lists them.
# Variables map to config overrides; ARGS="key=value ..." passes any other override.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The extras make setup installs, every one; requirements/ci.lock pins them (make lock regenerates it).
SETUP_EXTRAS := dev,shards,dashboard,completion,tensorboard,study,coco
LOCK := requirements/ci.lock

PRESET ?= sample
DATA ?=
MODEL ?=
RUN ?=
GPUS ?=
NODES ?=
BATCH ?=
LR_SCALING ?=
MAX_STEPS ?=
LOGGER ?=
RESUME ?=
INDEX_CACHE ?=
SHARDS ?=
VAL_IMAGES ?=
CHUNK_BYTES ?=
ARGS ?=
CKPT ?=
LAYER ?=
MAX_EPOCHS ?=
TEMPERATURES ?=
CLASSIFIER ?=
TRAIN_FROM ?=
PROTOCOL ?=
VOC_PRESET ?= $(if $(DATA),voc07)
# voc-seg on real data: seg11 (protocol release: VOC2011 + SBD -> seg11valid), voc12 with PROTOCOL=project-fcn.
SEG_PRESET ?= $(if $(DATA),$(if $(filter project-fcn,$(PROTOCOL)),voc12,seg11))
# voc-det: VOC_PRESET when given, else the protocol's preset (voc07_mlp for PROTOCOL=faster-rcnn-mlp) with DATA.
DET_PRESET ?= $(if $(filter command line environment,$(origin VOC_PRESET)),$(VOC_PRESET),$(if $(DATA),$(if $(filter faster-rcnn-mlp,$(PROTOCOL)),voc07_mlp,voc07)))
# voc-seg protocol release: SBD's benchmark_RELEASE folder (unset: $(DATA)/benchmark_RELEASE).
SBD ?=
# Places205 probes: PROBE_PRESET=places205 with DATA holding train/<category>/ and val/<category>/.
PROBE_PRESET ?= $(if $(DATA),imagenet,sample)
OUT ?=
INPUT ?=
INPUTS_FROM ?=
TEMPERATURE ?=
WEIGHTS_FORMAT ?=
STUDY ?=
DB ?=
TRIALS ?= 10
SHOW_MS ?= 1000
PORT ?= 8765
PROJECT ?=
ENTITY ?=
MODELS ?=
VOC ?=
PLACES ?=
SCALE ?=
PLAN ?=

# An upper-case variable on the command line that this Makefile never sets (GPU=8 for GPUS=8) is refused before
# anything runs, with the closest known names: otherwise it would be ignored and the run would train something else.
KNOWN_VARIABLES := $(sort $(shell sed -n 's/^\([A-Z][A-Z0-9_]*\) *?=.*/\1/p' $(MAKEFILE_LIST)))
COMMAND_LINE_VARIABLES := $(foreach name,$(.VARIABLES),$(if $(filter command line,$(origin $(name))),$(name)))
UNKNOWN_VARIABLES := $(filter-out $(KNOWN_VARIABLES),$(shell printf '%s\n' $(COMMAND_LINE_VARIABLES) | grep -E '^[A-Z][A-Z0-9_]*$$'))
ifneq ($(UNKNOWN_VARIABLES),)
$(error $(shell $(PYTHON) -c 'import difflib, sys; known = sys.argv[2].split(); print("; ".join("unknown variable " + name + " (did you mean " + (" or ".join(difflib.get_close_matches(name, known, 3, 0.5)) or "?") + "?)" for name in sys.argv[1].split()) + ". Known: " + " ".join(known))' '$(UNKNOWN_VARIABLES)' '$(KNOWN_VARIABLES)'))
endif

# Makefile variables -> config overrides (only those that are set).
PRETRAIN_OVERRIDES = $(if $(DATA),data.source=folder data.root=$(DATA)) $(if $(SHARDS),data.source=shards data.root=$(SHARDS)) $(if $(MODEL),model.name=$(MODEL)) \
	$(if $(RUN),run=$(RUN)) $(if $(GPUS),trainer.devices=$(GPUS)) $(if $(NODES),trainer.num_nodes=$(NODES)) \
	$(if $(BATCH),data.batch_size=$(BATCH)) $(if $(LR_SCALING),optim.lr_scaling=$(LR_SCALING)) \
	$(if $(MAX_STEPS),trainer.max_steps=$(MAX_STEPS)) $(if $(LOGGER),logger.kind=$(LOGGER)) \
	$(if $(RESUME),resume=$(RESUME)) $(if $(INDEX_CACHE),data.index_cache=$(INDEX_CACHE)) $(ARGS)

VOC_OVERRIDES = $(if $(CKPT),ckpt=$(CKPT)) $(if $(DATA),data.root=$(DATA)) $(if $(RUN),run=$(RUN)) \
	$(if $(GPUS),trainer.devices=$(GPUS)) $(if $(MAX_EPOCHS),trainer.max_epochs=$(MAX_EPOCHS) trainer.max_steps=-1) \
	$(if $(MAX_STEPS),trainer.max_steps=$(MAX_STEPS)) $(if $(LOGGER),logger.kind=$(LOGGER)) $(if $(RESUME),resume=$(RESUME))

.DEFAULT_GOAL := help
.PHONY: help setup lock test test-slow lint format demo reproduce pretrain shards priors colorize bench bench-color bench-index linear-probe compare dashboard voc-cls voc-det voc-seg eval-color turing-test turing-report clean

help: ## List the commands
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[$(SETUP_EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the project with its dev tools and every optional extra, at the versions of requirements/ci.lock (idempotent)

# Not after setup: a pyproject.toml whose bounds the old lock no longer meets must still get its new lock.
lock: ## Regenerate requirements/ci.lock: make setup's packages pinned by uv pip compile, from the indexes pip is configured with
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv>=0.5'
	$(PY) scripts/lock.py $(SETUP_EXTRAS) $(LOCK)

test: setup ## Run the default (fast) test suite
	$(PY) -m pytest

test-slow: setup ## Run the slow tests (long training runs, browser end-to-end)
	$(PY) -m pytest -m slow

lint: setup ## ruff lint and format check, and the import layering of docs/architecture.md (lint-imports)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

pretrain: setup ## Pretrain a colorizer: PRESET DATA MODEL RUN GPUS NODES BATCH (global) LR_SCALING MAX_STEPS LOGGER RESUME INDEX_CACHE SHARDS (instead of DATA: make shards' OUT) ARGS
	$(PY) -m lit_colorization.cli.pretrain --preset $(PRESET) $(PRETRAIN_OVERRIDES)

shards: setup ## Write an image folder as LitData shards for data.source=shards (needs the shards extra): DATA OUT (a folder or s3://...) VAL_IMAGES CHUNK_BYTES ARGS
	$(if $(and $(DATA),$(OUT)),,$(error make shards needs DATA=<image folder> and OUT=<new folder or s3://...>))
	$(PY) -m lit_colorization.cli.shards --data $(DATA) --out $(OUT) $(if $(VAL_IMAGES),--val-images $(VAL_IMAGES)) \
		$(if $(CHUNK_BYTES),--chunk-bytes $(CHUNK_BYTES)) $(ARGS)

priors: setup ## Compute the ab prior of a training set: DATA PRESET RUN OUT ARGS
	$(PY) -m lit_colorization.cli.priors --preset $(PRESET) $(if $(OUT),--out $(OUT)) \
		$(if $(DATA),data.source=folder data.root=$(DATA)) $(if $(RUN),run=$(RUN)) $(ARGS)

colorize: setup ## Colorize photos: CKPT INPUT (files/folders) or INPUTS_FROM (a list file, one path a line) OUT TEMPERATURE (unset: the weights' own) WEIGHTS_FORMAT
	$(PY) -m lit_colorization.cli.colorize --ckpt $(CKPT) --out $(or $(OUT),colorized) \
		$(if $(TEMPERATURE),--temperature $(TEMPERATURE)) $(if $(WEIGHTS_FORMAT),--weights-format $(WEIGHTS_FORMAT)) \
		$(if $(INPUTS_FROM),--inputs-from "$(INPUTS_FROM)") $(INPUT)

demo: setup ## The main job end to end on the embedded photos, on the CPU (under 10 minutes)
	$(PY) -m transfer.cli.demo

reproduce: setup ## The paper's table, resumable (exit 75 when stopped: run it again): RUN DATA VOC PLACES MODEL GPUS NODES SCALE (paper, smoke) PLAN=1 LOGGER ARGS
	$(PY) -m transfer.cli.reproduce $(if $(RUN),run=$(RUN)) $(if $(DATA),data=$(DATA)) $(if $(VOC),voc=$(VOC)) \
		$(if $(PLACES),places=$(PLACES)) $(if $(MODEL),model=$(MODEL)) $(if $(GPUS),gpus=$(GPUS)) \
		$(if $(NODES),nodes=$(NODES)) $(if $(SCALE),scale=$(SCALE)) $(if $(PLAN),plan=true) \
		$(if $(LOGGER),logger=$(LOGGER)) $(ARGS)

bench: setup ## Throughput side by side: model step, full step, JPEG end to end, the original CPU pipeline; ratios, MFU (ARGS: --device --size --batch ...)
	$(PY) benchmarks/bench.py $(ARGS)

bench-color: setup ## Soft-encoding throughput: fast path vs exact vs scikit-learn (the original release)
	$(PY) benchmarks/bench_color.py

bench-index: setup ## Start-up cost of a large image folder: first listing vs the file index, extrapolated to ImageNet (ARGS: --files --classes --dir)
	$(PY) benchmarks/bench_index.py $(ARGS)

linear-probe: setup ## Per-layer linear probes on frozen features: CKPT (default: latest run; random) LAYER DATA PROTOCOL (zhang16, goyal19) PROBE_PRESET (imagenet, places205) GPUS MAX_EPOCHS LOGGER RUN RESUME (auto: continue RUN) ARGS
	$(PY) -m transfer.cli.probe --preset $(PROBE_PRESET) $(if $(CKPT),ckpt=$(CKPT)) $(if $(LAYER),layer=$(LAYER)) \
		$(if $(DATA),data.source=folder data.root=$(DATA)) $(if $(PROTOCOL),protocol=$(PROTOCOL)) \
		$(if $(GPUS),trainer.devices=$(GPUS)) $(if $(MAX_EPOCHS),schedule.unit=epoch schedule.length=$(MAX_EPOCHS)) \
		$(if $(LOGGER),logger.kind=$(LOGGER)) $(if $(RUN),run=$(RUN)) $(if $(RESUME),resume=$(RESUME)) $(ARGS)

compare: setup ## Transfer results (results/transfer.jsonl) beside the paper's numbers: tables, results/compare.md and compare.csv (ours, paper, difference), results/linear_probe.png
	$(PY) -m transfer.cli.compare

dashboard: setup ## W&B report as code (needs the 'dashboard' extra online); offline: its panels and keys, and compare's output, in results/dashboard/: PROJECT ENTITY MODELS
	$(PY) -m transfer.cli.dashboard $(if $(PROJECT),--project $(PROJECT)) $(if $(ENTITY),--entity $(ENTITY)) \
		$(if $(MODELS),--models $(MODELS))

voc-cls: setup ## VOC07 classification, fine-tune or SVM (ARGS="low_shot=true": low-shot SVMs): CKPT DATA (holds VOCdevkit/) TRAIN_FROM PROTOCOL (kraehenbuehl16: the paper's, finetune, svm) MAX_STEPS MAX_EPOCHS GPUS LOGGER RUN RESUME ARGS
	$(PY) -m transfer.cli.voc_cls $(if $(VOC_PRESET),--preset $(VOC_PRESET)) $(VOC_OVERRIDES) \
		$(if $(TRAIN_FROM),train_from=$(TRAIN_FROM)) $(if $(PROTOCOL),protocol=$(PROTOCOL)) $(ARGS)

voc-det: setup ## VOC07 detection: PROTOCOL (faster-rcnn-fc67: the pretrained fc6/fc7 as the RoI head, the paper's; faster-rcnn-mlp) CKPT DATA MAX_STEPS MAX_EPOCHS GPUS LOGGER RUN RESUME ARGS
	$(PY) -m transfer.cli.voc_det $(if $(DET_PRESET),--preset $(DET_PRESET)) $(VOC_OVERRIDES) \
		$(if $(PROTOCOL),protocol=$(PROTOCOL)) $(ARGS)

voc-seg: setup ## Segmentation on Pascal VOC2011+SBD or VOC2012, mIoU: PROTOCOL (release: the paper's FCN-AlexNet, VOC2011+SBD -> seg11valid; project-fcn: VOC2012) CKPT DATA (holds VOCdevkit/) SBD TRAIN_FROM MAX_STEPS MAX_EPOCHS GPUS LOGGER RUN RESUME ARGS
	$(PY) -m transfer.cli.voc_seg $(if $(SEG_PRESET),--preset $(SEG_PRESET)) $(VOC_OVERRIDES) \
		$(if $(PROTOCOL),protocol=$(PROTOCOL)) $(if $(SBD),data.sbd_root=$(SBD)) $(if $(TRAIN_FROM),train_from=$(TRAIN_FROM)) $(ARGS)

eval-color: setup ## Colorization quality (paper Table 1) + T sweep: CKPT (one or more) DATA TEMPERATURES CLASSIFIER (weights file) LOGGER ARGS
	$(PY) -m lit_colorization.cli.eval_color $(ARGS) $(if $(LOGGER),logger.kind=$(LOGGER)) $(if $(CKPT),--ckpt $(CKPT)) \
		$(if $(DATA),--data $(DATA)) $(if $(TEMPERATURES),--temperatures $(TEMPERATURES)) \
		$(if $(CLASSIFIER),--classifier-weights $(CLASSIFIER))

turing-test: setup ## "Real or colorized?" study web app on 127.0.0.1: STUDY (folder with real/ and colorized/) DB TRIALS SHOW_MS PORT
	$(if $(STUDY),,$(error STUDY=<folder with real/ and colorized/> is required; make eval-color writes one))
	$(PY) -m lit_colorization.study serve --study $(STUDY) --db $(or $(DB),$(STUDY)/answers.sqlite) \
		--trials $(TRIALS) --show-ms $(SHOW_MS) --port $(PORT)

turing-report: setup ## Fooling rate of a study with its 95% interval: STUDY or DB, OUT (CSV export)
	$(PY) -m lit_colorization.study report --db $(or $(DB),$(STUDY)/answers.sqlite) $(if $(OUT),--csv $(OUT))

clean: ## Remove caches (keeps .venv, runs/ and results/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
