"""`sgrec info`: what a run directory holds — steps, manifests, key stats, integrity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .artifacts import list_steps
from .errors import ArtifactError, SgrecError


def run_info(run: Path) -> dict[str, Any]:
    """Summarise every step folder of ``run``. A step whose own files are damaged is
    ``invalid``; one whose inputs changed since it was built (another data/, rebuilt SIDs, ...)
    is ``stale``, with the break named; neither is raised."""
    from .rundir import Run
    from .runlock import holders

    run = Path(run)
    the_run = Run(run)  # a file is refused as such
    if not run.is_dir():
        raise ArtifactError("run directory does not exist", run)
    steps = []
    for step in list_steps(run):
        entry: dict[str, Any] = {"step": step}
        try:
            m = the_run.manifest(step)
            breaks = the_run.breaks(step)
        except SgrecError as e:
            entry.update(status="invalid", error=str(e))
            steps.append(entry)
            continue
        d = m.data
        entry.update(
            status="stale" if breaks else "ok",
            created_at=d.get("created_at"),
            wall_time_s=d.get("wall_time_s"),
            sgrec_version=d.get("sgrec_version"),
            seed=d.get("seed"),
            dataset=d.get("dataset", {}),
            config=d.get("config", {}),
            stats=_stats(run / step, "stats.json" if step in ("data", "sids", "eval")
                         else "summary.json"),
        )
        if breaks:
            entry["error"] = "; ".join(breaks)
        steps.append(entry)
    return {"run": str(run), "in_use_by": holders(run), "steps": steps,
            "resumable": resumable(run)}


def resumable(run: Path) -> list[dict[str, Any]]:
    """Interrupted trainings whose checkpoint `train --resume` continues: the generator's
    (RUN/.sft.resume) and A2PO's (RUN/.a2po[-TAG].resume), unless they ran to the end."""
    found = []
    for folder in sorted(Path(run).glob(".*.resume")):
        step = folder.name[1:-len(".resume")]
        state_file = folder / ("checkpoint" if step == "sft" else "") / "state.json"
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        cfg = state.get("config", {})
        if step == "sft":
            if state.get("stopped") or state.get("epoch", 0) >= cfg.get("epochs", 0):
                continue
            done, command = f"epoch {state.get('epoch')} of {cfg.get('epochs')}", "train"
        elif step.startswith("a2po"):
            tag = cfg.get("tag")
            done = f"step {state.get('step')} of {cfg.get('steps')}"
            command = "train --a2po" + (f" --tag {tag}" if tag else "")
        else:
            continue
        found.append({"step": step, "done": done, "checkpoint": str(folder),
                      "command": f"sgrec {command} --run {run} --resume"})
    return found


def _stats(folder: Path, name: str = "stats.json") -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
