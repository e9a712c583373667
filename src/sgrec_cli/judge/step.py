"""`sgrec judge`: Stage A (aspect evidence) and Stage B (the user-conditional aggregator) over
candidate pairs of training users, written to RUN/judge.

Files: ``contexts.jsonl`` (one judged user: history, next item, held-out flag, weights w(x)),
``pairs.jsonl`` (one judged pair: aspect scores, semantic reward s_hol, evidence),
``aspects.npy`` (P, A) float32 with NaN for a missing answer, ``reward.npy`` (P,) s_hol (NaN
when an aspect is missing), ``pair_user.npy`` / ``pair_item.npy`` (P,) user and item indices,
``aggregator.safetensors`` + ``aggregator.json``, ``summary.json`` (counts, held-out AUC table,
throughput), ``manifest.json``. The trained backend adds ``model/`` (the tuned
sentence-transformer, safetensors, with ``sgrec_judge.json``: its base, inputs and training
report), ``item_embeddings.npy`` (N, D) tuned item embeddings and ``train_examples.npy``
(E, 2) the (user, position) of every training example it learned from.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import atomic_write_json, read_jsonl, staged_step, write_jsonl, write_manifest
from ..device import resolve_device
from ..errors import ArtifactError, BadInputError
from ..eval.bootstrap import MIN_TEST_USERS, paired_bootstrap
from ..progress import progress_bar
from ..rundir import Run, as_run
from ..runlock import writes_run
from . import ASPECTS, OBJECTIVES
from .aggregator import (
    Aggregator,
    AggregatorConfig,
    fit_aggregator,
    holistic,
    pair_wins,
    user_auc,
    user_features,
)
from .backends import BACKENDS, make_backend
from .cache import AnswerCache, cache_file
from .candidates import (
    Contexts,
    file_candidates,
    judge_contexts,
    nn_candidates,
    with_targets,
)
from .config import JudgeConfig
from .embedding import EmbeddingBackend
from .embedding import evidence as closest_purchase
from .prompts import FAILED, OK, UNREADABLE, make_prompt
from .trained import (
    TRAIN_EXAMPLES,
    TrainedBackend,
    TuneSpec,
    doc_text,
    encode,
    fine_tune,
    hit_examples,
    judge_training_examples,
    training_rows,
)

STEP = "judge"


@dataclass
class StageA:
    scores: np.ndarray  # (P, A) float32, NaN = missing
    evidence: list[str]
    counts: dict
    seconds: float  # Stage A wall time
    backend_seconds: float  # time spent judging prompts / pairs that were not cached
    backend: str = ""  # the backend's name (with its model: part of the cache keys)


def formula_scores(score, ctx: Contexts, pair_ctx: np.ndarray, pair_item: np.ndarray,
                   titles: list[str], queries: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, list[str]]:
    """(aspect scores (P, A), evidence naming the closest purchase) of every pair, from a
    backend's ``score(history, candidates[, query])`` (``queries``: one per context)."""
    scores = np.full((pair_item.size, len(ASPECTS)), np.nan, dtype=np.float32)
    evidence = [""] * pair_item.size
    bounds = np.searchsorted(pair_ctx, np.arange(len(ctx.users) + 1))
    for u, hist in enumerate(ctx.histories):
        lo, hi = bounds[u], bounds[u + 1]
        extra = {} if queries is None else {"query": queries[u]}
        s, near, cos = score(hist, pair_item[lo:hi], **extra)
        scores[lo:hi] = s
        for j in range(hi - lo):
            evidence[lo + j] = closest_purchase(titles, hist, int(near[j]), float(cos[j]))
            if queries is not None:
                evidence[lo + j] += f"; learned next-pick fit {s[j, 1]:.2f}"
    return scores, evidence


def embedding_scores(backend: EmbeddingBackend, ctx: Contexts, pair_ctx: np.ndarray,
                     pair_item: np.ndarray, titles: list[str]) -> tuple[np.ndarray, list[str]]:
    return formula_scores(backend.score, ctx, pair_ctx, pair_item, titles)


def formula_stage(backend, ctx: Contexts, pair_ctx: np.ndarray, pair_item: np.ndarray,
                  titles: list[str]) -> StageA:
    """Stage A of a backend that scores pairs by formula (embedding, trained): every pair at
    once, no cache."""
    started = time.perf_counter()
    queries = backend.queries(ctx.histories) if isinstance(backend, TrainedBackend) else None
    scores, evidence = formula_scores(backend.score, ctx, pair_ctx, pair_item, titles, queries)
    seconds = time.perf_counter() - started
    counts = {"pairs": int(pair_item.size), "judged": int(pair_item.size), "cached": 0,
              "missing_pairs": 0}
    return StageA(scores, evidence, counts, seconds, seconds)


def prompt_stage(backend, cache: AnswerCache, ctx: Contexts, *, pair_ctx: np.ndarray,
                 pair_item: np.ndarray, titles: list[str], prompt_history: int,
                 chunk_prompts: int, progress: bool, log=None) -> StageA:
    """Ask the backend every (pair, aspect) question that the cache cannot answer, a chunk at a
    time; each judged chunk is appended to the cache before the next one starts."""
    started = time.perf_counter()
    n_pairs, n_asp = pair_item.size, len(ASPECTS)
    scores = np.full((n_pairs, n_asp), np.nan, dtype=np.float32)
    status = np.empty((n_pairs, n_asp), dtype=object)
    counts = {"prompts": n_pairs * n_asp, "cached": 0, "judged": 0, OK: 0, UNREADABLE: 0,
              FAILED: 0}
    failures: list[str] = []
    backend_seconds = 0.0
    pending: list[tuple[int, int, object]] = []  # (pair row, aspect, prompt)

    def flush() -> None:
        nonlocal backend_seconds
        if not pending:
            return
        t = time.perf_counter()
        outcomes = backend.judge([p for _, _, p in pending])
        backend_seconds += time.perf_counter() - t
        cache.add((p.key, o) for (_, _, p), o in zip(pending, outcomes, strict=True))
        for (row, a, _), o in zip(pending, outcomes, strict=True):
            record(row, a, o)
            if o.status == FAILED and len(failures) < 3:
                failures.append(o.detail)
        counts["judged"] += len(pending)
        pending.clear()

    def record(row: int, a: int, o) -> None:
        status[row, a] = o.status
        counts[o.status] += 1
        if o.status == OK:
            scores[row, a] = o.score

    bounds = np.searchsorted(pair_ctx, np.arange(len(ctx.users) + 1))
    with progress_bar(progress, f"judge ({backend.name}) users", total=len(ctx.users),
                      log=log) as bar:
        for u, hist in enumerate(ctx.histories):
            shown = [titles[i] for i in hist[-prompt_history:]]
            for row in range(bounds[u], bounds[u + 1]):
                for a, aspect in enumerate(ASPECTS):
                    p = make_prompt(backend.name, shown, titles[pair_item[row]], aspect)
                    hit = cache.get(p.key)
                    if hit is not None:
                        counts["cached"] += 1
                        record(row, a, hit)
                    else:
                        pending.append((row, a, p))
            if len(pending) >= chunk_prompts:
                flush()
            bar.note(f"{counts['judged']} judged, {counts['cached']} cached")
            bar.advance()
        flush()
    if failures and log:
        log(f"{counts[FAILED]} prompts failed (not cached, a re-run retries them), e.g. "
            f"{failures[0]}")
    evidence = []
    for row in range(n_pairs):
        parts = []
        for a, aspect in enumerate(ASPECTS):
            if status[row, a] == OK:
                parts.append(f"{aspect} {1 + 4 * scores[row, a]:.1f}/5")
            else:
                parts.append(f"{aspect} {status[row, a]}")
        evidence.append(", ".join(parts))
    missing = int(np.isnan(scores).any(axis=1).sum())
    counts.update({"pairs": int(n_pairs), "missing_pairs": missing})
    if cache.torn_lines:
        counts["cache_torn_lines"] = cache.torn_lines
    return StageA(scores, evidence, counts, time.perf_counter() - started, backend_seconds)


# ------------------------------------------------------------------------------------ Stage B


def feedback_pairs(pair_ctx: np.ndarray, is_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive row, negative row) for every non-target candidate: the item the user chose
    next is preferred to each candidate they did not choose."""
    target_row = np.full(pair_ctx.max() + 1 if pair_ctx.size else 0, -1, dtype=np.int64)
    target_row[pair_ctx[is_target]] = np.flatnonzero(is_target)
    neg = np.flatnonzero(~is_target)
    return target_row[pair_ctx[neg]], neg


def heldout_mask(n_users: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(n_users, dtype=bool)
    mask[rng.permutation(n_users)[: max(1, round(fraction * n_users))]] = True
    return mask


MIN_PAIRS = 100  # fewer held-out (or fit) pairs: the AUC (or the weights) is flagged as such


def small_sample_note(*, heldout_users: int, heldout_pairs: int, fit_users: int,
                      fit_pairs: int) -> str | None:
    """Why the held-out AUC or the fitted weights rest on too little, or None."""
    notes = []
    if heldout_pairs < MIN_PAIRS or heldout_users < MIN_TEST_USERS:
        notes.append(f"the held-out AUC rests on {heldout_pairs:,} pairs from "
                     f"{heldout_users:,} users")
    if fit_pairs < MIN_PAIRS:
        notes.append(f"the aggregator was fitted on {fit_pairs:,} pairs from {fit_users:,} users")
    if not notes:
        return None
    return (" and ".join(notes) + f" (fewer than {MIN_PAIRS} pairs or {MIN_TEST_USERS} users): "
            "too few for a reliable figure; judge more users")


def stage_b(cfg: JudgeConfig, features: np.ndarray, pair_ctx: np.ndarray, is_target: np.ndarray,
            scores: np.ndarray, heldout: np.ndarray) -> tuple[Aggregator, dict, list[dict]]:
    """Fit the aggregator on the fit users' pairs (``heldout`` (U,): the users kept out);
    report held-out AUC of s_hol against the other objective, a global weighting, uniform
    weights and every single aspect."""
    n_users = features.shape[0]
    pos, neg = feedback_pairs(pair_ctx, is_target)
    users = pair_ctx[neg]
    complete = ~(np.isnan(scores[pos]).any(1) | np.isnan(scores[neg]).any(1))
    fit = complete & ~heldout[users]
    test = complete & heldout[users]
    if not fit.any() or not test.any():
        raise BadInputError(f"no complete pairwise feedback to fit and test the aggregator "
                            f"({int(fit.sum())} fit pairs, {int(test.sum())} held-out pairs); "
                            "judge more users or fix the unreadable answers")
    variants, logs = {}, {}
    for objective in OBJECTIVES:
        for personalised in (True, False):
            name = f"{objective}{'' if personalised else '-global'}"
            acfg = AggregatorConfig(objective=objective, personalised=personalised,
                                    steps=cfg.steps, seed=cfg.seed)
            variants[name], logs[name] = fit_aggregator(
                features, list(ASPECTS), users[fit], scores[pos[fit]], scores[neg[fit]], acfg)
    chosen = variants[cfg.objective]

    def wins_for(weights: np.ndarray) -> np.ndarray:
        w = weights[users[test]]
        return pair_wins(holistic(w, scores[pos[test]]), holistic(w, scores[neg[test]]))

    n_asp = len(ASPECTS)
    table = {name: wins_for(agg.weights(features)) for name, agg in variants.items()}
    table["uniform"] = wins_for(np.full((n_users, n_asp), 1.0 / n_asp))
    for a, aspect in enumerate(ASPECTS):
        table[f"only-{aspect}"] = wins_for(np.eye(n_asp)[np.full(n_users, a)])
    auc = {name: round(float(w.mean()), 4) for name, w in table.items()}
    # the best single aspect is chosen on the fit users, so the comparison stays held-out
    fit_auc = {}
    for a, aspect in enumerate(ASPECTS):
        fit_auc[aspect] = float(pair_wins(scores[pos[fit], a], scores[neg[fit], a]).mean())
    best = max(fit_auc, key=fit_auc.get)
    tests = {}
    for other in ("uniform", f"only-{best}", f"{cfg.objective}-global"):
        _, a_u = user_auc(users[test], table[cfg.objective])
        _, b_u = user_auc(users[test], table[other])
        tests[f"{cfg.objective} vs {other}"] = paired_bootstrap(a_u, b_u, n_boot=10_000,
                                                                seed=cfg.seed)
    weights = chosen.weights(features)
    counts = {"heldout_users": int(np.unique(users[test]).size),
              "fit_users": int(np.unique(users[fit]).size),
              "heldout_pairs": int(test.sum()), "fit_pairs": int(fit.sum())}
    report = {**counts, "small_sample": small_sample_note(**counts),
              "incomplete_pairs": int((~complete).sum()), "auc": auc,
              "best_single_aspect_on_fit": best, "paired_bootstrap": tests,
              "mean_weights": {a: round(float(x), 4)
                               for a, x in zip(ASPECTS, weights.mean(0), strict=True)}}
    return chosen, report, logs[cfg.objective]


# --------------------------------------------------------------------------------------- step


@dataclass
class _Candidates:
    pair_ctx: np.ndarray  # (P,) context (user position in ctx) of each pair
    pair_item: np.ndarray  # (P,) item index
    is_target: np.ndarray  # (P,) the pair is the item the user chose next
    targets_in_candidates: int
    seconds: float
    file_report: Any = None


def _candidates(run: Run, cfg: JudgeConfig, ctx: Contexts, emb: np.ndarray, device: str,
                log) -> _Candidates:
    t0 = time.perf_counter()
    file_report = None
    if cfg.candidates == "beams":
        cands = _beams(run, cfg, ctx.histories, device)
    elif cfg.candidates == "nn":
        cands = nn_candidates(emb, ctx, cfg.num_candidates)
    else:
        cands, file_report = file_candidates(Path(cfg.candidates_file), run.data, ctx)
        if log and (file_report.unknown_items or file_report.unknown_users):
            log(f"candidate file: skipped {file_report.unknown_items} unknown items and "
                f"{file_report.unknown_users} unknown users, e.g. {file_report.examples[0]}")
    seconds = time.perf_counter() - t0
    pair_ctx, pair_item, is_target = with_targets(cands, ctx.targets)
    hits = int(sum(t in c for t, c in zip(ctx.targets, cands, strict=True)))
    return _Candidates(pair_ctx, pair_item, is_target, hits, seconds, file_report)


def _beams(run: Run, cfg: JudgeConfig, histories, device: str) -> list[list[int]]:
    """The SFT generator's top unseen items of each history (constrained beam search, as RL
    will sample them)."""
    from ..models import top_items

    items, _ = top_items(run, "sft", histories, cfg.num_candidates, num_beams=cfg.num_beams,
                         device=device, exclude_history=True, fill=True, decode=cfg.decode)
    return [[int(i) for i in row if i >= 0] for row in items]


def _users_with_candidates(c: _Candidates) -> int:
    """Users who have at least one candidate besides their next item (a pair to judge)."""
    return int(np.unique(c.pair_ctx[~c.is_target]).size)


def _keep_larger(run: Run, c: _Candidates, force: bool) -> None:
    """Refuse to replace a RUN/judge of more users by this one (e.g. a candidate file of a
    few users) unless ``force``: the larger judge may be hours of LLM answers."""
    if force or not run.has(STEP):
        return
    try:
        if run.breaks(STEP):
            return  # built from other data/SIDs/SFT than the run holds: not worth keeping
        old = json.loads((run.path / STEP / "summary.json").read_text(encoding="utf-8"))
        old_users = int(old.get("users_with_candidates", old["users"]))
    except (ArtifactError, OSError, ValueError, KeyError, TypeError):
        return  # an unusable judge/ is not worth keeping either
    new_users = _users_with_candidates(c)
    if new_users < old_users:
        raise ArtifactError(
            f"holds a judge of {old_users:,} users; this one has candidates for {new_users:,} "
            "and would replace it: pass --force to replace it, or use another --run",
            run.path / STEP)


@dataclass
class Trained:
    backend: TrainedBackend
    examples: np.ndarray  # (E, 2) user, position of every training example it was trained on
    report: dict


def _train_judge(run: Run, cfg: JudgeConfig, ctx: Contexts, heldout: np.ndarray, *,
                 items: list[dict], titles: list[str], device: str, log) -> Trained:
    """Fine-tune the trained backend on the fit users' training examples before their latest
    (judge/trained.py), hard negatives from the SFT generator's beams."""
    fit_users = {ctx.users[u] for u in np.flatnonzero(~heldout)}
    examples = judge_training_examples(run.data.split("train"), fit_users, cfg.train_positions)
    t0 = time.perf_counter()
    beams = _beams(run, cfg, [e.history for e in examples], device) if examples else []
    beam_seconds = time.perf_counter() - t0
    before = len(examples)
    if cfg.train_on == "hits":
        examples, beams = hit_examples(examples, beams)
    docs = [doc_text(it) for it in items]
    rows = training_rows(examples, beams, titles=titles, docs=docs,
                         negatives=cfg.train_negatives, query_history=cfg.query_history,
                         seed=cfg.seed)
    if len(rows["anchor"]) < cfg.train_batch_size:
        hits = ", beams holding the next item" if cfg.train_on == "hits" else ""
        raise BadInputError(
            f"the trained judge has {len(rows['anchor'])} training rows (fit users' examples "
            f"before their latest{hits}, with {cfg.train_negatives} beam negatives each) and "
            f"needs at least --train-batch-size {cfg.train_batch_size}: judge more users, or lower "
            "--train-batch-size / --train-negatives")
    users = len({e.user for e in examples})
    if log:
        log(f"training the judge on {len(rows['anchor']):,} examples of {users:,} fit users "
            f"({cfg.judge_model}, {cfg.train_epochs} epoch(s))")
    model, report = fine_tune(TuneSpec(cfg.judge_model, cfg.train_epochs, cfg.train_batch_size,
                                       cfg.train_lr, cfg.seed), rows, device, log=log)
    t0 = time.perf_counter()
    item_emb = encode(model, docs)
    report.update({"examples": len(examples), "users": users, "fit_users": len(fit_users),
                   "train_on": cfg.train_on, "examples_before_filter": before,
                   "beam_seconds": round(beam_seconds, 2),
                   "item_encode_seconds": round(time.perf_counter() - t0, 2)})
    trained_on = np.asarray([(e.user, e.position) for e in examples],
                            dtype=np.int64).reshape(-1, 2)
    return Trained(TrainedBackend(model, item_emb, titles, cfg.query_history), trained_on,
                   report)


def _stage_a(run: Run, cfg: JudgeConfig, ctx: Contexts, c: _Candidates, *, emb: np.ndarray,
             titles: list[str], device: str, progress: bool, log,
             trained: Trained | None = None) -> tuple[StageA, Path | None]:
    """Aspect scores of every pair from the configured backend (cached when it prompts);
    ``StageA.backend`` names the backend as its answers are cached."""
    spec = BACKENDS[cfg.backend]
    backend = trained.backend if trained is not None else make_backend(cfg, emb, device)
    if not spec.prompts:
        a = formula_stage(backend, ctx, c.pair_ctx, c.pair_item, titles)
        a.backend = backend.name
        return a, None
    cache_path = cache_file(Path(cfg.cache_dir) if cfg.cache_dir else run.path / ".judge-cache",
                            backend.name)
    a = prompt_stage(backend, AnswerCache(cache_path), ctx, pair_ctx=c.pair_ctx,
                     pair_item=c.pair_item, titles=titles, prompt_history=cfg.prompt_history,
                     chunk_prompts=spec.chunk_prompts(cfg), progress=progress, log=log)
    # evidence also names the closest purchase, from the item embeddings
    _, near_ev = embedding_scores(EmbeddingBackend(emb), ctx, c.pair_ctx, c.pair_item, titles)
    a.evidence = [f"{x}; {y}" for x, y in zip(a.evidence, near_ev, strict=True)]
    a.backend = backend.name
    return a, cache_path


def _summary(cfg: JudgeConfig, ctx: Contexts, c: _Candidates, a: StageA, *, cache_path,
             report: dict, stage_b_seconds: float) -> dict:
    prompts = BACKENDS[cfg.backend].prompts
    pairs_judged = a.counts["judged"] / (len(ASPECTS) if prompts else 1)
    summary = {
        "backend": a.backend, "candidates": cfg.candidates, "users": len(ctx.users),
        "users_with_candidates": _users_with_candidates(c),
        "pairs": int(c.pair_item.size), "targets_in_candidates": c.targets_in_candidates,
        "stage_a": {**a.counts, "seconds": round(a.seconds, 3),
                    "backend_seconds": round(a.backend_seconds, 3),
                    "pairs_per_s": round(pairs_judged / a.backend_seconds, 2)
                    if a.backend_seconds > 0 and pairs_judged else None,
                    "cache": str(cache_path) if cache_path else None},
        "seconds": {"candidates": round(c.seconds, 3),
                    "stage_a": round(a.seconds, 3), "stage_b": round(stage_b_seconds, 3)},
        "aggregator": report,
    }
    if c.file_report is not None:
        summary["candidate_file"] = asdict(c.file_report)
    return summary


@writes_run
def run_step(run: Run | Path, cfg: JudgeConfig, *, progress: bool = True, log=None,
             force: bool = False) -> dict:
    """Stage A over the candidate pairs of training users, Stage B, and RUN/judge. A RUN/judge
    covering more users than this judge would is kept (refused) unless ``force``."""
    started = time.time()
    run = as_run(run)
    data = run.data
    inputs = run.digests("data", "sids")
    emb = run.sids.embeddings()
    device = resolve_device(cfg.device)
    items = data.items()
    titles = [str(it.get("title") or it.get("id")) for it in items]
    ctx = judge_contexts(data, cfg.max_users, cfg.seed)
    if not ctx.users:
        raise BadInputError("no training users to judge", data.folder / "train.jsonl")
    trains = BACKENDS[cfg.backend].trains
    if cfg.candidates == "beams" or trains:
        inputs.update(run.digests("sft"))
    heldout = heldout_mask(len(ctx.users), cfg.heldout_fraction, cfg.seed)
    c = _candidates(run, cfg, ctx, emb, device, log)
    _keep_larger(run, c, force)
    trained = _train_judge(run, cfg, ctx, heldout, items=items, titles=titles, device=device,
                           log=log) if trains else None
    a, cache_path = _stage_a(run, cfg, ctx, c, emb=emb, titles=titles, device=device,
                             progress=progress, log=log, trained=trained)

    t0 = time.perf_counter()
    features = user_features(ctx.histories, emb)
    agg, report, agg_log = stage_b(cfg, features, c.pair_ctx, c.is_target, a.scores, heldout)
    weights = agg.weights(features)  # (U, A)
    reward = holistic(weights[c.pair_ctx], a.scores).astype(np.float32)
    summary = _summary(cfg, ctx, c, a, cache_path=cache_path, report=report,
                       stage_b_seconds=time.perf_counter() - t0)
    if trained is not None:
        summary["training"] = trained.report

    t0 = time.perf_counter()
    with staged_step(run.path, STEP) as tmp:
        _write_pairs(tmp, ctx, c, a, items=items, weights=weights, heldout=heldout,
                     reward=reward)
        _write_aggregator(tmp, agg, agg_log)
        if trained is not None:
            trained.backend.save(tmp, {"base": cfg.judge_model, **inputs,
                                       "training": trained.report})
            np.save(tmp / TRAIN_EXAMPLES, trained.examples)
        summary["seconds"]["write"] = round(time.perf_counter() - t0, 3)
        atomic_write_json(tmp / "summary.json", summary)
        write_manifest(tmp, step=STEP, config=cfg.to_dict(), seed=cfg.seed, started=started,
                       inputs=inputs, dataset=data.manifest.dataset,
                       extra={"aspects": list(ASPECTS)})
    run.forget(STEP)
    return summary


def _write_pairs(tmp: Path, ctx: Contexts, c: _Candidates, a: StageA, *, items: list[dict],
                 weights: np.ndarray, heldout: np.ndarray, reward: np.ndarray) -> None:
    write_jsonl(tmp / "contexts.jsonl", (
        {"user": ctx.users[u], "user_id": ctx.user_ids[u], "history": ctx.histories[u],
         "target": ctx.targets[u], "heldout": bool(heldout[u]),
         "weights": {asp: round(float(w), 5) for asp, w in zip(ASPECTS, weights[u],
                                                               strict=True)}}
        for u in range(len(ctx.users))))
    write_jsonl(tmp / "pairs.jsonl", (
        {"user": ctx.users[c.pair_ctx[r]], "item": int(c.pair_item[r]),
         "item_id": str(items[c.pair_item[r]]["id"]), "is_target": bool(c.is_target[r]),
         "scores": {asp: _num(a.scores[r, k]) for k, asp in enumerate(ASPECTS)},
         "reward": _num(reward[r]), "evidence": a.evidence[r]}
        for r in range(c.pair_item.size)))
    np.save(tmp / "aspects.npy", a.scores)
    np.save(tmp / "reward.npy", reward)
    np.save(tmp / "pair_user.npy", np.asarray(ctx.users, dtype=np.int64)[c.pair_ctx])
    np.save(tmp / "pair_item.npy", c.pair_item)


def _write_aggregator(tmp: Path, agg: Aggregator, agg_log: list) -> None:
    from safetensors.numpy import save_file

    save_file({k: v.numpy() for k, v in agg.state_dict().items()},
              str(tmp / "aggregator.safetensors"))
    atomic_write_json(tmp / "aggregator.json", {**agg.to_json(), "log": agg_log})


def _num(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 5)


# --------------------------------------------------------------------------------------- show


def show_user(run: Run | Path, user: str, k: int = 20) -> dict:
    """A judged user's candidates, best semantic reward first, with aspects and evidence."""
    run = as_run(run)
    m = run.step(STEP, needs=("data",))
    folder = m.path.parent
    contexts = read_jsonl(folder / "contexts.jsonl")
    match = [c for c in contexts if c["user_id"] == str(user)]
    if not match:
        raise BadInputError(f"user {user!r} was not judged in this run "
                            f"({len(contexts)} users were)", folder / "contexts.jsonl")
    c = match[0]
    items = run.data.items()
    pairs = [p for p in read_jsonl(folder / "pairs.jsonl") if p["user"] == c["user"]]
    pairs.sort(key=lambda p: -1.0 if p["reward"] is None else -p["reward"])
    for p in pairs:
        p["title"] = items[p["item"]].get("title")
    return {"user_id": c["user_id"], "heldout": c["heldout"], "weights": c["weights"],
            "history": [{"item_id": str(items[i]["id"]), "title": items[i].get("title")}
                        for i in c["history"]],
            "next_item": str(items[c["target"]]["id"]), "candidates": pairs[:k],
            "backend": json.loads((folder / "summary.json").read_text())["backend"]}
