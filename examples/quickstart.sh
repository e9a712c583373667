#!/usr/bin/env bash
# The sgrec workflow on the real Scientific dataset (run from the repository root after `make install`).
set -euo pipefail
DATA=${DATA:-../shared/data/amazon_scientific_2018}
RUN=${RUN:-runs/quickstart}
.venv/bin/sgrec prepare "$DATA" --run "$RUN"
.venv/bin/sgrec build-sids --run "$RUN"            # RQ-VAE, 3 x 256, dedup by reassignment
.venv/bin/sgrec train --run "$RUN" --epochs "${EPOCHS:-50}"   # generator SFT (~1 min/epoch on 2 CPU cores)
.venv/bin/sgrec judge --run "$RUN"                 # PSJ, embedding backend, SFT-beam candidates
.venv/bin/sgrec judge show --run "$RUN" --user 0 --k 10   # why each candidate scores what it does
.venv/bin/sgrec train --run "$RUN" --model sasrec
.venv/bin/sgrec eval --run "$RUN" --model sft --model sasrec --model popular
.venv/bin/sgrec recommend --run "$RUN" --user 0 --k 10   # what comes next for user "0"
.venv/bin/sgrec info --run "$RUN"
