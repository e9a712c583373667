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
    return {"run": str(run), "in_use_by": holders(run), "steps": steps}


def _stats(folder: Path, name: str = "stats.json") -> dict[str, Any]:
    path = folder / name
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
    if step == "sids" and stats:
        return sid_rows(stats)
    if step == "judge" and stats:
        agg = stats["aggregator"]
        auc = ", ".join(f"{k} {v:.3f}" for k, v in agg["auc"].items())
        users = stats.get("users_with_candidates", stats["users"])
        return [("judged", f"{users:,} users, {stats['pairs']:,} pairs "
                           f"({stats['candidates']} candidates) with {stats['backend']}"),
                ("missing", f"{stats['stage_a']['missing_pairs']:,} pairs lack an aspect"),
                ("held-out AUC", auc)] + (
                [("small sample", agg["small_sample"])] if agg.get("small_sample") else [])
    if step == "eval" and stats:
        return eval_rows(stats)
    if not stats:
        return []
    from . import render

    if step == "sft":
        return render.sft_summary(stats)
    if step == "sasrec":
        return render.sasrec_summary(stats)
    if step.startswith("a2po"):
        return render.a2po_summary(stats)
    return [(k, json.dumps(v)) for k, v in stats.items() if not isinstance(v, (dict, list))]


def eval_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per split: every model's NDCG@10 and Recall@10."""
    from .eval.step import stats_splits

    return [(f"{split} ({s['users']:,} users)", "; ".join(
        f"{m} N@10 {r['ndcg@10']:.4f} R@10 {r['recall@10']:.4f}" for m, r in s["models"].items()))
        for split, s in stats_splits(stats).items()]


def sid_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    prefixes = ", ".join(f"{r:.1%}" for r in s["raw_prefix_collision_rates"])
    rows = [
        ("method", f"{s['method']}, {s['levels']} x {s['codebook_size']} codes, "
                   f"dedup {s['dedup']} -> SID length {s['final_sid_length']}"),
        ("items", f"{s['items']:,}"),
        ("raw collision rate", f"{s['raw_collision_rate']:.2%} of items share their SID "
                               f"(prefixes: {prefixes})"),
        ("final collisions", f"{s['final_collisions']} ({s['items_moved_by_dedup']} items moved)"),
        ("codebook use", "; ".join(f"L{u['level']} {u['used']}/{s['codebook_size']} "
                                   f"H={u['entropy_bits']:.2f} bits" for u in s["level_usage"])),
        ("reconstruction", f"relative error {s['relative_reconstruction_error']:.3f}, "
                           f"MSE {s['reconstruction_mse']:.4f}"),
    ]
    coh = s.get("semantic_coherence_level1_leaf_category")
    if coh and coh.get("lift") is not None:
        rows.append(("semantic coherence", f"same level-1 code -> same leaf category "
                     f"{coh['p_same_label_same_code']:.1%} vs random "
                     f"{coh['p_same_label_random']:.2%}"
                     f" ({coh['lift']:.1f}x)"))
    sec = s.get("seconds", {})
    if sec:
        rows.append(("time", f"embed {sec['embed']} s (cached: {sec['embeddings_cached']}), "
                             f"quantize {sec['quantize']} s"))
    return rows
