"""`sgrec info`: what a run directory holds — steps, manifests, key stats, integrity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .artifacts import list_steps, load_manifest
from .errors import ArtifactError, SgrecError


def run_info(run: Path) -> dict[str, Any]:
    """Summarise every step folder of ``run``; a damaged step is reported, not raised."""
    run = Path(run)
    if not run.is_dir():
        raise ArtifactError("run directory does not exist", run)
    steps = []
    for step in list_steps(run):
        entry: dict[str, Any] = {"step": step}
        try:
            m = load_manifest(run, step, verify=True)
        except SgrecError as e:
            entry.update(status="invalid", error=str(e))
            steps.append(entry)
            continue
        d = m.data
        entry.update(
            status="ok",
            created_at=d.get("created_at"),
            wall_time_s=d.get("wall_time_s"),
            sgrec_version=d.get("sgrec_version"),
            seed=d.get("seed"),
            dataset=d.get("dataset", {}),
            config=d.get("config", {}),
            stats=_stats(run / step),
        )
        steps.append(entry)
    return {"run": str(run), "steps": steps}


def _stats(folder: Path) -> dict[str, Any]:
    path = folder / "stats.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}


def key_stats(step: str, stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The few figures worth a line in the human-readable view of each step."""
    if step == "data" and stats:
        rows = [(k, f"{stats[k]:,}") for k in ("users", "items", "interactions") if k in stats]
        sl = stats.get("sequence_length", {})
        if sl:
            rows.append(("sequence length", f"mean {sl['mean']}, median {sl['median']}, "
                                            f"min {sl['min']}, max {sl['max']}"))
        sp = stats.get("split", {})
        if sp:
            rows.append(("split", f"{sp['train_examples']:,} train / {sp['valid_examples']:,} "
                                  f"valid / {sp['test_examples']:,} test examples, "
                                  f"max history {sp['max_history']}"))
        if stats.get("dropped"):
            rows.append(("dropped", ", ".join(f"{k}={v:,}" for k, v in stats["dropped"].items())))
        return rows
    return [(k, json.dumps(v)) for k, v in stats.items() if not isinstance(v, (dict, list))]
