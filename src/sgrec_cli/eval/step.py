"""`sgrec eval`: full-ranking leave-one-out metrics for several models on one split, per-user
results, and paired bootstrap comparisons (docs/design.md §3).

Models are often evaluated one at a time, so RUN/eval keeps the results of models evaluated
earlier, per split, as long as they are still what the model would give now. Each model's result
records what it was computed from (``computed_from``): the sha256 of the model's step manifest
(none for ``popular``, which depends on the data only), of ``data/manifest.json``, and
``num_beams`` for generator models. An earlier result whose model was retrained, whose model
folder is gone, whose data was re-prepared, or (on the split being evaluated) that used other
beams is dropped, never shown stale, and the output says why. The comparisons of the evaluated
split cover every model it holds after the merge, recomputed from the per-user ranks stored in
``<model>.<split>.jsonl``.

``stats.json``: ``{"splits": {split: {"users", "models": {model: metrics + computed_from},
"comparisons": [...]}}, "last_eval": {"split", "evaluated", "kept", "dropped"}}``.
"""

from __future__ import annotations

import json
import shutil
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from ..artifacts import (
    atomic_write_json,
    read_jsonl,
    staged_step,
    write_jsonl,
    write_manifest,
)
from ..data.store import PreparedData
from ..errors import SgrecError
from ..models import load_top_items
from ..names import model_step, resolve_decode, split_model
from ..rundir import Run, as_run
from ..runlock import writes_run
from .bootstrap import paired_bootstrap, small_sample
from .config import EVAL_K_MAX as K_MAX
from .config import EvalConfig
from .metrics import (
    coverage,
    invalid_and_duplicate_rate,
    per_user_metrics,
    ranks_of_targets,
    summarize,
)

STEP = "eval"
COMPARED = ("ndcg@10", "recall@10")
ALPHA = 0.05  # a comparison names the better model only when p < ALPHA


def computed_from(run: Run, model: str, data_digest: str,
                  search: tuple[str, int] | None) -> dict:
    """What a model's result depends on now; raises ArtifactError when its step is unusable.
    ``search`` (decode mode, num_beams) is kept for generator models only (None: not
    compared): the mode as resolved for the catalogue, the beams only for beam search."""
    step = model_step(model)
    step_digest = None if step is None else run.manifest(step).digest
    out = {"model_manifest": step_digest, "data_manifest": data_digest, "num_beams": None}
    if split_model(model)[1] == "ranker":  # fused with the run's SASRec: stale when it is
        out["ranker_manifest"] = run.manifest("sasrec").digest
    if search is not None and model not in ("sasrec", "popular"):
        mode = resolve_decode(search[0], len(run.data.items()))
        out.update(decode=mode, num_beams=search[1] if mode == "beam" else None)
    return out


def stale_reason(recorded: dict | None, current: dict | None) -> str | None:
    """Why an earlier result no longer holds (None: it still does). ``current`` is None when
    the model's step is gone or unreadable; a ``num_beams`` of None in it is not compared."""
    if not recorded:
        return "it records nothing about what it was computed from (an older sgrec)"
    if current is None:
        return "its model folder is gone or unreadable"
    if recorded.get("data_manifest") != current["data_manifest"]:
        return "data/ was prepared again since it was evaluated"
    if recorded.get("model_manifest") != current["model_manifest"]:
        return "retrained since it was evaluated"
    if recorded.get("ranker_manifest") != current.get("ranker_manifest"):
        return "the SASRec it is fused with was retrained since it was evaluated"
    if "decode" in current and recorded.get("decode", "beam") != current["decode"]:
        return f"evaluated with --decode {recorded.get('decode', 'beam')}, this eval uses " \
               f"{current['decode']}"
    if current["num_beams"] is not None and recorded.get("num_beams") != current["num_beams"]:
        return f"evaluated with --num-beams {recorded.get('num_beams')}, this eval uses " \
               f"{current['num_beams']}"
    return None


def merge_plan(recorded: dict[str, dict | None],
               current: dict[str, dict | None]) -> tuple[list[str], dict[str, str]]:
    """Pure: given model -> recorded ``computed_from`` of earlier results and model -> current
    one (missing or None: the model is gone), return (kept models, {dropped model: reason})."""
    reasons = {m: stale_reason(rec, current.get(m)) for m, rec in recorded.items()}
    return ([m for m, r in reasons.items() if r is None],
            {m: r for m, r in reasons.items() if r is not None})


def stats_splits(stats: dict) -> dict:
    """{split: {"users", "models", "comparisons"}} of a stats.json (the one-split layout of
    older versions is read as one split)."""
    if "splits" in stats:
        return stats["splits"]
    return {stats["split"]: stats} if "split" in stats else {}


def compare(ranks: dict[str, np.ndarray], n_boot: int, seed: int) -> list[dict]:
    """Paired bootstraps of every pair (a before b in ``ranks`` order) on COMPARED metrics:
    diff = mean(a) − mean(b); ``better`` names the higher model when p < ALPHA (and the users
    are enough for a test: ``bootstrap.small_sample``), else None."""
    per_user = {m: per_user_metrics(r) for m, r in ranks.items()}
    out = []
    for a, b in combinations(ranks, 2):
        for metric in COMPARED:
            res = paired_bootstrap(per_user[a][metric], per_user[b][metric], n_boot=n_boot,
                                   seed=seed, alpha=ALPHA)
            out.append({"a": a, "b": b, "metric": metric, **res, "better": _better(a, b, res)})
    return out


def _better(a: str, b: str, res: dict) -> str | None:
    if res["p_value"] >= ALPHA or res["diff"] == 0 or small_sample(res["n_users"]):
        return None
    return a if res["diff"] > 0 else b


def _score(run: Run, model: str, examples: list, cfg: EvalConfig,
           device: str) -> tuple[dict, list[dict], np.ndarray]:
    """(summary metrics, per-user rows, ranks) of one model on one split. History items are
    excluded for every model: a beam search keeps ``num_beams`` + (longest history) beams so
    that 20 items remain once they are dropped, as SASRec ranks all non-history items (an
    exhaustive one scores every item)."""
    t0 = time.perf_counter()
    n_items = len(run.data.items())
    top = load_top_items(run, model, device)
    topk, _ = top([e.history for e in examples], K_MAX, num_beams=cfg.num_beams, fill=True,
                  decode=cfg.decode)
    ranks = ranks_of_targets(topk, np.array([e.target for e in examples]))
    result = {**summarize(per_user_metrics(ranks)), **invalid_and_duplicate_rate(topk, n_items),
              "coverage@10": coverage(topk, n_items, 10),
              "seconds": round(time.perf_counter() - t0, 2)}
    if hasattr(top, "ranker_weight"):  # @ranker: the fusion weight chosen on validation
        result["ranker_weight"] = top.ranker_weight
    rows = [{"user": e.user, "target": e.target, "rank": int(r), "top20": [int(i) for i in t]}
            for e, r, t in zip(examples, ranks, topk, strict=True)]
    return result, rows, ranks


def _earlier(run: Run) -> tuple[dict, list[dict]]:
    """Per-split results of the current RUN/eval, or nothing (with a note) if it is unusable."""
    if not run.has(STEP):
        return {}, []
    try:
        run.manifest(STEP)
        return stats_splits(json.loads((run.path / STEP / "stats.json").read_text("utf-8"))), []
    except (SgrecError, OSError, ValueError, KeyError) as e:
        return {}, [{"split": "all splits", "model": "earlier results",
                     "reason": f"the earlier eval is unusable ({e})"}]


def _current_or_none(run: Run, model: str, data_digest: str,
                     search: tuple[str, int] | None):
    try:
        return computed_from(run, model, data_digest, search)
    except SgrecError:
        return None


def _merge(run: Run, earlier: dict, split: str, fresh: dict, data_digest: str,
           search: tuple[str, int]) -> tuple[dict, list[dict], list[dict]]:
    """(splits, kept, dropped): the earlier results that still hold, with the ``fresh`` results
    of ``split`` in place of (or after) earlier ones of the same models."""
    splits, kept, dropped = {}, [], []
    for s, old in earlier.items():
        recorded = {m: e.get("computed_from") for m, e in old["models"].items()
                    if not (s == split and m in fresh)}
        # --decode and --num-beams are checked on `split` only
        here = search if s == split else None
        keep, drop = merge_plan(recorded, {m: _current_or_none(run, m, data_digest, here)
                                           for m in recorded})
        kept += [{"split": s, "model": m} for m in keep]
        dropped += [{"split": s, "model": m, "reason": r} for m, r in drop.items()]
        models = {m: fresh[m] if s == split and m in fresh else e
                  for m, e in old["models"].items() if m in keep or (s == split and m in fresh)}
        comps = [c for c in old.get("comparisons", []) if c["a"] in keep and c["b"] in keep]
        splits[s] = {"users": old["users"], "models": models, "comparisons": comps}
    if split in splits:
        splits[split]["models"].update({m: r for m, r in fresh.items()
                                        if m not in splits[split]["models"]})
    return {s: v for s, v in splits.items() if v["models"]}, kept, dropped


def _stored_ranks(run: Run, model: str, split: str) -> np.ndarray:
    return np.array([r["rank"] for r in read_jsonl(run.path / STEP / f"{model}.{split}.jsonl")],
                    dtype=np.int64)


@writes_run
def run_step(run: Run | Path, cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.models`` on ``cfg.split``, merge with the earlier results that still hold,
    write RUN/eval atomically; returns the split's merged view plus evaluated / kept / dropped."""
    from ..device import resolve_device

    started, run, models, split = time.time(), as_run(run), list(cfg.models), cfg.split
    device = resolve_device(cfg.device)
    data = run.data
    digest = data.manifest.digest
    examples = data.split(split)
    fresh, rows, ranks = {}, {}, {}
    for m in models:
        source = computed_from(run, m, digest, (cfg.decode, cfg.num_beams))
        fresh[m], rows[m], ranks[m] = _score(run, m, examples, cfg, device)
        fresh[m]["computed_from"] = source
    earlier, notes = _earlier(run)
    splits, kept, dropped = _merge(run, earlier, split, fresh, digest,
                                   (cfg.decode, cfg.num_beams))
    splits.setdefault(split, {"users": len(examples), "models": fresh, "comparisons": []})
    here = splits[split]
    here["users"] = len(examples)
    ranks = {m: ranks[m] if m in ranks else _stored_ranks(run, m, split) for m in here["models"]}
    here["comparisons"] = compare(ranks, cfg.n_boot, cfg.seed)
    last = {"split": split, "evaluated": models, "kept": kept, "dropped": notes + dropped}
    _write(run, splits, last, rows, started, data, cfg)
    return {"split": split, **here, **{k: v for k, v in last.items() if k != "split"}}


def _write(run: Run, splits: dict, last: dict, rows: dict, started: float,
           data: PreparedData, cfg: EvalConfig) -> None:
    """Stage the new RUN/eval: fresh per-user files, the kept ones copied over, stats, manifest."""
    inputs = {"data/manifest.json": data.manifest.digest}
    for s in splits.values():
        for m, e in s["models"].items():
            if e["computed_from"]["model_manifest"]:
                inputs[f"{m}/manifest.json"] = e["computed_from"]["model_manifest"]
            if e["computed_from"].get("ranker_manifest"):
                inputs["sasrec/manifest.json"] = e["computed_from"]["ranker_manifest"]
    with staged_step(run.path, STEP) as tmp:
        for m, r in rows.items():
            write_jsonl(tmp / f"{m}.{last['split']}.jsonl", r)
        for k in last["kept"]:
            name = f"{k['model']}.{k['split']}.jsonl"
            shutil.copyfile(run.path / STEP / name, tmp / name)
        atomic_write_json(tmp / "stats.json", {"splits": splits, "last_eval": last})
        write_manifest(tmp, step=STEP, config=cfg.to_dict(), seed=cfg.seed, started=started,
                       inputs=inputs, dataset=data.manifest.dataset)
    run.forget(STEP)
