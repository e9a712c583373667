"""`sgrec train` (generator): RUN/data + RUN/sids -> RUN/sft.

Training works in ``RUN/.sft.resume/`` (checkpoint, log, best weights: what ``--resume``
continues, kept after the run so that ``--resume --epochs N`` can extend it). RUN/sft itself is
built in a staged folder and swapped in whole only when training finishes, with its manifest
tying the model to the data and SIDs it saw; an interrupted run never touches the previous one.
Under torchrun every process trains (DDP) and the main one writes the files.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..artifacts import atomic_write_json, staged_step, write_manifest
from ..rundir import Run, as_run
from ..runlock import writes_run
from .config import SFTConfig
from .sft import BEST, LOG, train_sft

STEP = "sft"


def work_dir(run: Path) -> Path:
    return Path(run) / f".{STEP}.resume"


@writes_run
def run_step(run: Run | Path, cfg: SFTConfig, *, resume: bool = False, log=None,
             on_epoch: Callable[[dict], None] | None = None, progress: bool = False,
             stop_after: int | None = None) -> dict:
    """Train the generator into RUN/sft; ``resume`` continues an interrupted run exactly."""
    from ..distributed import barrier, setup, teardown

    started = time.time()
    run = as_run(run)
    data, sids = run.data, run.sids  # SIDs checked against the data
    inputs = run.digests("data", "sids")
    world = setup(cfg.device)
    try:
        text = sids.embeddings() if cfg.model.text else None
        summary = train_sft(data.training_split("train"), data.split("valid"), sids.codes,
                            sids.codebook_sizes, cfg, work_dir(run.path),
                            max_history=data.max_history, text=text, inputs=inputs,
                            resume=resume,
                            log=log, on_epoch=on_epoch, world=world, progress=progress,
                            stop_after=stop_after)
        summary["processes"] = world.size
        if world.main and summary["finished"]:
            _write(run, cfg, summary, inputs, started)
        barrier(world)
    finally:
        teardown(world)
    return summary


def _write(run: Run, cfg: SFTConfig, summary: dict, inputs: dict, started: float) -> None:
    work = work_dir(run.path)
    with staged_step(run.path, STEP) as tmp:
        shutil.copytree(work / BEST, tmp / BEST)
        shutil.copy2(work / LOG, tmp / LOG)
        atomic_write_json(tmp / "summary.json", summary)
        write_manifest(tmp, step=STEP, config=cfg.to_dict(), seed=cfg.seed, started=started,
                       inputs=inputs, dataset=run.data.manifest.dataset,
                       extra={"max_history": summary["max_history"]})
    run.forget(STEP)
