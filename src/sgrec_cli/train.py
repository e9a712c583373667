"""`sgrec train`: the SID generator by SFT (RUN/sids -> RUN/sft) or the SASRec baseline
(RUN/data -> RUN/sasrec), with manifests tying each model to the data and SIDs it saw."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from transformers import T5ForConditionalGeneration

from .artifacts import MANIFEST, atomic_write_json, load_manifest, staged_step, write_manifest
from .baselines.sasrec import SASRec, SASRecConfig, train_sasrec
from .data.store import load_data
from .device import resolve_device
from .errors import ArtifactError
from .generator.sft import SFTConfig, train_sft
from .generator.tokens import SidVocab
from .sids.build import load_sids

SFT_STEP = "sft"
SASREC_STEP = "sasrec"


def run_sft(run: Path, cfg: SFTConfig, resume: bool = False, log=None,
            progress: bool = False) -> dict:
    """Train into RUN/sft. The folder gets its manifest only when training ends, so an
    interrupted run is never taken for a finished one; ``resume`` continues its checkpoint.
    Under torchrun every process trains (DDP) and the main one writes the files."""
    from .distributed import barrier, setup, teardown

    started = time.time()
    run = Path(run)
    data = load_data(run)
    sids = load_sids(run)
    out = run / SFT_STEP
    world = setup(cfg.device)
    try:
        if world.main:
            (out / MANIFEST).unlink(missing_ok=True)
        barrier(world)
        summary = train_sft(data.split("train"), data.split("valid"), sids.codes,
                            sids.codebook_sizes, cfg, out, resume=resume, log=log, world=world,
                            progress=progress)
        summary["processes"] = world.size
        if world.main:
            atomic_write_json(out / "summary.json", summary)
            write_manifest(out, step=SFT_STEP, config=asdict(cfg), seed=cfg.seed,
                           started=started,
                           inputs={"data/manifest.json": data.manifest.digest,
                                   "sids/manifest.json": sids.manifest.digest},
                           dataset=data.manifest.dataset)
        barrier(world)
    finally:
        teardown(world)
    return summary


def run_sasrec(run: Path, cfg: SASRecConfig, log=None) -> dict:
    started = time.time()
    data = load_data(run)
    seqs, n = data.sequences(), len(data.items())
    valid = data.split("valid")
    model, hist = train_sasrec(seqs, n, [e.history for e in valid], [e.target for e in valid],
                               cfg, log=log)
    best = max(hist, key=lambda r: r["ndcg@10"])
    summary = {"best_epoch": best["epoch"], "best_valid": best, "epochs_run": hist[-1]["epoch"],
               "seconds": round(time.time() - started, 1)}
    from safetensors.torch import save_file

    with staged_step(run, SASREC_STEP) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        atomic_write_json(tmp / "config.json", {"n_items": n, **asdict(cfg)})
        with open(tmp / "train_log.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in hist)
        atomic_write_json(tmp / "summary.json", summary)
        write_manifest(tmp, step=SASREC_STEP, config=asdict(cfg), seed=cfg.seed,
                       started=started, inputs={"data/manifest.json": data.manifest.digest},
                       dataset=data.manifest.dataset)
    return summary


def load_sasrec(run: Path) -> SASRec:
    data = load_data(run)
    m = load_manifest(run, SASREC_STEP)
    if m.data["inputs"].get("data/manifest.json") != data.manifest.digest:
        raise ArtifactError("trained on another data/ folder; run `sgrec train --model sasrec` "
                            "again", m.path)
    from safetensors.torch import load_file

    folder = m.path.parent
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    n_items = meta.pop("n_items")
    model = SASRec(n_items, SASRecConfig(**meta))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return model


@dataclass(frozen=True)
class LoadedSFT:
    """A trained generator ready for decoding, with what decoding needs beside it."""

    model: T5ForConditionalGeneration
    vocab: SidVocab
    codes: np.ndarray  # (N, L) item SIDs, row i = item index i
    max_history: int  # history items the model was trained on


def load_sft(run: Path, device: str = "cpu", step: str = SFT_STEP) -> LoadedSFT:
    """RUN/<step>/best (the SFT generator, or an A2PO fine-tune of it), checked against the
    run's data and SIDs."""
    from .generator.model import load_generator

    data = load_data(run)
    sids = load_sids(run)
    m = load_manifest(run, step)
    if (m.data["inputs"].get("sids/manifest.json") != sids.manifest.digest
            or m.data["inputs"].get("data/manifest.json") != data.manifest.digest):
        raise ArtifactError("trained on other data or SIDs than the run now holds; run "
                            "`sgrec train` again", m.path)
    model, _cfg, vocab = load_generator(m.path.parent / "best", device=resolve_device(device))
    max_history = int(m.data.get("config", {}).get("max_history", 20))
    return LoadedSFT(model, vocab, sids.codes, max_history)
