"""`sgrec train --a2po`: RUN/sft (+ RUN/sasrec, + RUN/judge) -> RUN/a2po (or RUN/a2po-<tag>).
By default the advantage is business-only (``--advantage biz``, no judge) and the business
reward is the run's SASRec as a teacher (``--business ranker --ranker-shape distill``, fused
with the SFT generator at `sft@ranker`'s weight) at each user's next position (``--examples
next``); the advantages that use the judge read RUN/judge.

The policy starts from the SFT generator; a frozen copy is the KL reference. Semantic rewards
come from the judge: recomputed for any (history, item) from the item embeddings (embedding
backend) or the tuned judge model (trained backend) and the judge's aggregator, otherwise
looked up in the judge's table of (user, item) rewards (missing -> the group falls back to
A_biz). With ``--business ranker`` the run's SASRec scores every rollout item given the
group's history (RUN/sasrec is then an input of the folder). A trained judge's own training
examples get no semantic reward (it would restate their target); their groups use A_biz. Every
``eval_every`` steps the policy is scored on validation users (all by default; NDCG@10,
history excluded). The best state is kept in ``best/`` only if its per-user validation
NDCG@10 beats the SFT start's by a paired bootstrap with p < ``select_alpha``; otherwise
``best/`` holds the SFT weights and the summary says why (``selection``).

Groups are drawn from every training example, from each user's latest one, or from each
user's next position (``examples``: ``next`` reads the user's training items as the history and
no target, so only the label-free ranker reward can score its groups; neither the generator nor
the ranker was fitted on what follows it, where on a training example both were);
each step's ``batch_users`` groups are rolled out and back-propagated ``chunk_users`` at a time,
their gradients accumulated into one optimiser step.

Resume: at every validation the whole training state (policy, AdamW, best state, random
states, log) is saved to ``RUN/.<step>.resume/``, replaced in one rename; ``--resume`` continues
from it, and the finished step equals an uninterrupted run's (same log up to timings, identical
weights), provided the options are the same (``steps`` may be raised to extend a run). The
finished ``RUN/<step>`` replaces the previous one only at the end, so an interrupted run never
touches it.

Under torchrun every process trains (DDP) on its share of each step's groups and validates its
share of the validation users; the main process writes the files.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import atomic_write_json, read_jsonl, staged_step, write_jsonl, write_manifest
from ..checkpoint import (
    check_resumable,
    load_training_state,
    read_state,
    rng_tensors,
    save_training_state,
)
from ..data.split import Example, truncate
from ..errors import ConfigError
from ..eval.bootstrap import paired_bootstrap
from ..eval.metrics import per_user_metrics, ranks_of_targets
from ..generator.decode import LoadedGenerator, generator_top_items
from ..generator.model import save_generator
from ..generator.store import load_model
from ..generator.trie import SidTrie
from ..progress import progress_bar, quiet
from ..rundir import Run, as_run
from ..runlock import locked
from ..sampling import seeded_subset
from .a2po import (
    Policy,
    PolicyScorer,
    RankerFn,
    RankerTopFn,
    SemanticFn,
    a2po_step,
    later_training_items,
)
from .advantages import ADVANTAGES, judge_mask
from .config import A2POConfig

# options that may differ on --resume without changing what is computed (steps: extend a run)
_RESUMABLE_CHANGES = {"steps", "device", "tag"}  # the tag names the folder: it is the same


def resume_dir(run: Path, step: str) -> Path:
    return Path(run) / f".{step}.resume"


# ------------------------------------------------------------------------------ the rewards


def judge_trained_mask(train: Sequence, trained_on: set | None) -> np.ndarray:
    """(len(train),) True for the training examples the judge was trained on (their semantic
    reward would restate their target): (user, position among the user's examples)."""
    out = np.zeros(len(train), dtype=bool)
    if not trained_on:
        return out
    seen: dict[int, int] = {}
    for i, e in enumerate(train):
        pos = seen.get(e.user, 0)
        seen[e.user] = pos + 1
        out[i] = (e.user, pos) in trained_on
    return out


def item_values(items: list[dict]) -> np.ndarray:
    """Per-item value (N,) for the value reward: the items' ``value`` field, missing ones at the
    median of the known values (a neutral guess that keeps the reward's scale)."""
    raw = np.asarray([np.nan if it.get("value") is None else float(it["value"]) for it in items])
    known = raw[np.isfinite(raw)]
    if not known.size:
        raise ConfigError("--business value needs item values, and no item of this run has "
                          "one (data/README.md: the `value` field)")
    if (known < 0).any():
        raise ConfigError("--business value needs values >= 0; this run has negative ones")
    return np.where(np.isfinite(raw), raw, np.median(known))


def _valid_scores(p: Policy, valid, world) -> np.ndarray:
    """Per-user NDCG@10 (U,) on validation targets, history excluded: the protocol of
    `sgrec eval`. Under torchrun each process scores every world.size-th user and the scores
    are combined."""
    scores = np.zeros(len(valid))
    mine = valid[world.rank::world.size]
    if mine:
        gen = LoadedGenerator(p.model, p.vocab, p.trie, p.codes, p.max_history)
        top, _ = generator_top_items(gen, [list(e.history) for e in mine], 10, 20,
                                     exclude_history=True, fill=True)
        ranks = ranks_of_targets(top, np.asarray([e.target for e in mine], dtype=np.int64))
        scores[world.rank::world.size] = per_user_metrics(ranks, ks=(10,))["ndcg@10"]
    if world.distributed:
        t = torch.as_tensor(scores, dtype=torch.float64, device=world.device)
        torch.distributed.all_reduce(t)  # each user's score comes from one process
        scores = t.cpu().numpy()
    return scores


def next_positions(sequences: Sequence[Sequence[int]], max_history: int,
                   held_out: int = 2) -> list[Example]:
    """Each user's position after their training items, as an example without a label: the
    training items (all but the last ``held_out``, validation and test, which are never read)
    as the history, target -1."""
    return [Example(u, truncate(list(seq[:len(seq) - held_out]), max_history), -1)
            for u, seq in enumerate(sequences) if len(seq) > held_out]


def training_pool(train: Sequence, examples: str) -> np.ndarray:
    """Indices into ``train`` (per user, t = 1, 2, ...) that groups are drawn from: every
    example (``all``, and ``next``, whose examples are ``next_positions``) or each user's last
    one (``latest``)."""
    if examples in ("all", "next"):
        return np.arange(len(train))
    if examples != "latest":
        raise ValueError(f"examples {examples!r} is not known")
    last: dict[int, int] = {}
    for i, ex in enumerate(train):
        last[ex.user] = i
    return np.asarray(sorted(last.values()), dtype=np.int64)


def select(start: np.ndarray, best: np.ndarray, best_step: int, alpha: float) -> dict:
    """Whether the best validation state is kept over the start: its validation NDCG@10 must
    beat the start's by a paired bootstrap over the same users with p < ``alpha`` (alpha 1:
    any state better than the start is kept). Returns the decision and the test."""
    test = paired_bootstrap(best, start)
    keep = best_step > 0 and test["diff"] > 0 and (alpha >= 1 or test["p_value"] < alpha)
    return {"best_step": best_step, "kept_step": best_step if keep else 0,
            "valid_diff": test["diff"], "p_value": test["p_value"], "alpha": alpha,
            "n_users": test["n_users"]}


# --------------------------------------------------------------------------------- the step


@dataclass
class _Job:
    """One `train --a2po` call: the checked inputs and what the loop keeps between steps."""

    run: Run
    step: str
    cfg: A2POConfig
    world: Any
    digests: dict[str, str]
    semantic: SemanticFn | None
    how: str
    trained_on: set | None  # (user, position) examples the judge trained on: no r_sem there
    values: np.ndarray | None
    ranker: RankerFn | None  # --business ranker: the run's SASRec scoring rollout items
    ranker_top: RankerTopFn | None  # and its best items (--ranker-candidates)
    started: float
    say: Callable[[str], None]


def run_step(run: Run | Path, cfg: A2POConfig, *, resume: bool = False,
             progress: bool = True, log=None, on_row: Callable[[dict], None] | None = None,
             stop_after: int | None = None) -> dict:
    """Fine-tune RUN/sft into RUN/a2po[-TAG] (``cfg.tag``); returns the summary. ``on_row``
    receives each validation's log row (the CLI prints it). ``stop_after`` ends this call after
    that many steps with a checkpoint to --resume (time-sliced jobs; the tests). Jobs with
    distinct tags may train at once on one run (runlock: the run shared, the tag's own folder
    alone)."""
    run = as_run(run)
    with locked(run.path, own=cfg.step):
        return _run_step(run, cfg, resume, progress, log, on_row, stop_after)


def _run_step(run: Run, cfg: A2POConfig, resume: bool, progress: bool, log,
              on_row: Callable[[dict], None] | None, stop_after: int | None) -> dict:
    from ..distributed import setup, teardown
    from ..judge.store import semantic_reward

    started = time.time()
    run.step("sft", needs=("data", "sids"))
    uses_judge = ADVANTAGES[cfg.advantage].uses_judge
    if uses_judge:
        r = semantic_reward(run)
        semantic, how, trained_on = r.fn, r.how, r.trained_on
    else:
        semantic, how, trained_on = None, "none (business only)", None
    values = item_values(run.data.items()) if cfg.business == "value" else None
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after {stop_after!r} must be >= 1")
    ranker_model = _ranker_model(run) if cfg.business == "ranker" else None
    world = setup(cfg.device)
    ranker = ranker_top = None
    if ranker_model is not None:
        from ..baselines.sasrec import item_log_probs, recommend

        ranker_model.to(torch.device(world.device))
        ranker = partial(item_log_probs, ranker_model)
        ranker_top = partial(recommend, ranker_model)
        if cfg.ranker_shape == "distill" and cfg.ranker_weight is None:
            cfg = replace(cfg, ranker_weight=_teacher_weight(run, ranker_model, world.device))
    job = _Job(run, cfg.step, cfg, world,
               run.digests("data", "sids", "sft", *(("judge",) if uses_judge else ()),
                           *(("sasrec",) if ranker else ())),
               semantic, how, trained_on, values, ranker, ranker_top, started,
               (log or quiet) if world.main else quiet)
    try:
        # the DDP-wrapped model lives only inside _train, so it is freed before the process
        # group is destroyed (a DDP reducer still alive then hangs the exit)
        return _train(job, resume, progress, on_row, stop_after)
    finally:
        teardown(world)


def _ranker_model(run: Run):
    """The business ranker: RUN/sasrec, which scores each rollout item given the group's
    history (its manifest digest joins the A2PO folder's inputs, so retraining SASRec marks
    the folder stale)."""
    from ..baselines.store import load_sasrec

    if not run.has("sasrec"):
        raise ConfigError("--business ranker scores rollouts with the run's SASRec, and this "
                          f"run has none; train it first: sgrec train --run {run.path} "
                          "--model sasrec")
    return load_sasrec(run)


def _teacher_weight(run: Run, sasrec, device: str) -> float:
    """The ranker's share of the distill teacher when none is given: the weight `--model
    sft@ranker` chooses on validation, so the teacher is that fused model (deterministic, so a
    --resume chooses it again)."""
    from ..generator.store import load_generator_step
    from ..models import fusion_weight, sasrec_ranker

    return fusion_weight(run, load_generator_step(run, "sft", device), sasrec_ranker(sasrec))


def _policy(job: _Job) -> tuple[Policy, Any]:
    """(the policy to train, its generator config), starting from RUN/sft."""
    cfg, world = job.cfg, job.world
    if cfg.batch_users % world.size:
        raise ConfigError(f"--batch-users {cfg.batch_users} must be a multiple of the "
                          f"{world.size} processes")
    device = torch.device(world.device)
    model, gen_cfg, vocab = load_model(job.run, "sft", str(device))
    if model.hybrid:  # A2PO trains the generator; the dense head stays as SFT left it
        model.dense_proj.requires_grad_(False)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    scorer = PolicyScorer(model, vocab)
    if world.distributed:
        scorer = torch.nn.parallel.DistributedDataParallel(
            scorer, device_ids=[device.index] if device.type == "cuda" else None)
    codes = job.run.sids.codes
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    return Policy(model, scorer, ref, opt, vocab, SidTrie.from_codes(codes, vocab.codebook_sizes),
                  codes, job.run.data.max_history, world), gen_cfg


def _start(job: _Job, p: Policy, valid, rng, gen, resume: bool
           ) -> tuple[dict, dict, list, dict[str, np.ndarray]]:
    """(state, best weights, log rows, per-user validation NDCG@10 of the start and of the
    best state): from the checkpoint, or fresh from the SFT start."""
    ckpt = resume_dir(job.run.path, job.step)
    if resume and (ckpt / "state.json").is_file():
        state = read_state(ckpt)
        check_resumable(state, config=job.cfg.to_dict(), may_change=_RESUMABLE_CHANGES,
                        inputs=job.digests, folder=ckpt)

        def extra(folder: Path) -> tuple[dict, list]:
            from safetensors.torch import load_file

            best = {k: v.to(p.model.device) for k, v in
                    load_file(str(folder / "best.safetensors")).items()}
            scores = {k: v.numpy() for k, v in
                      load_file(str(folder / "valid_scores.safetensors")).items()}
            return best, read_jsonl(folder / "train_log.jsonl"), scores

        best_state, rows, scores = load_training_state(
            ckpt, model=p.model, optimizer=p.optimizer, generators={"sample": gen},
            device=torch.device(job.world.device), extra=extra)
        rng.bit_generator.state = state.pop("numpy_rng")
        state["config"] = job.cfg.to_dict()
        job.say(f"resuming after step {state['step']} (best valid NDCG@10 "
                f"{state['best']['valid_ndcg@10']:.4f} at step {state['best']['step']})")
        return state, best_state, rows, scores
    if resume:
        job.say(f"nothing to resume in {ckpt}: starting afresh")
    if job.world.main:
        shutil.rmtree(ckpt, ignore_errors=True)
    start = _valid_scores(p, valid, job.world)
    ndcg = float(start.mean())
    state = {"step": 0, "seconds": 0.0, "best": {"step": 0, "valid_ndcg@10": ndcg},
             "config": job.cfg.to_dict(), "inputs": job.digests}
    best_state = {k: v.detach().clone() for k, v in p.model.state_dict().items()}
    return state, best_state, [{"step": 0, "valid_ndcg@10": ndcg}], {"start": start,
                                                                      "best": start}


def _checkpoint(job: _Job, p: Policy, *, best_state, rng, gen, state, rows, scores) -> None:
    from safetensors.torch import save_file

    def extra(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in best_state.items()},
                  str(tmp / "best.safetensors"))
        save_file({k: torch.tensor(v) for k, v in scores.items()},  # copies: start may be best
                  str(tmp / "valid_scores.safetensors"))
        write_jsonl(tmp / "train_log.jsonl", rows)

    save_training_state(resume_dir(job.run.path, job.step), model=p.model,
                        optimizer=p.optimizer,
                        rng=rng_tensors({"sample": gen}, torch.device(job.world.device)),
                        state={**state, "numpy_rng": rng.bit_generator.state}, extra=extra)


def _train(job: _Job, resume: bool, progress: bool, on_row, stop_after: int | None) -> dict:
    from ..distributed import mean_over_processes

    cfg, world, data = job.cfg, job.world, job.run.data
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=torch.device(world.device)).manual_seed(cfg.seed)
    p, gen_cfg = _policy(job)
    job.say(f"a2po: advantage {cfg.advantage}, G={cfg.group_size}, rho={cfg.rho}, rollout "
            f"{cfg.rollout}, business {cfg.business}"
            + (f" ({cfg.ranker_shape}, teacher {cfg.teacher_weight:g} x SASRec + "
               f"{1 - cfg.teacher_weight:g} x SFT), " if cfg.ranker_shape == "distill"
               and cfg.business == "ranker" else ", ")
            + (f"semantic reward from the {job.how}" if job.semantic else "business reward only"))
    train = data.training_split("train --a2po")
    futures = (later_training_items(train, data.sequences()) if cfg.business == "future"
               else None)
    withheld = judge_trained_mask(train, job.trained_on)
    if cfg.examples == "next":  # no training example: none the judge learned from
        train = next_positions(data.sequences(), data.max_history)
        withheld = np.zeros(len(train), dtype=bool)
    pool = training_pool(train, cfg.examples)
    if withheld.any():
        job.say(f"a2po: no semantic reward on the {int(withheld[pool].sum()):,} of "
                f"{len(pool):,} examples the judge was trained on")
    if cfg.batch_users > len(pool):
        raise ConfigError(f"--batch-users {cfg.batch_users} is more than the {len(pool):,} "
                          f"{'positions' if cfg.examples == 'next' else 'training examples'} "
                          f"groups are drawn from (--examples {cfg.examples})")
    valid = seeded_subset(data.split("valid"), cfg.valid_users, cfg.seed)
    state, best_state, rows, scores = _start(job, p, valid, rng, gen, resume)
    mine = slice(world.rank, None, world.size)
    first = state["step"] + 1
    t_call = time.perf_counter()
    with progress_bar(progress and world.main, f"{job.step} steps ({cfg.advantage})",
                      total=cfg.steps, completed=state["step"], log=job.say) as bar:
        for s in range(first, cfg.steps + 1):
            t_step = time.perf_counter()
            pick = pool[rng.choice(len(pool), size=cfg.batch_users, replace=False)]
            judged = judge_mask(cfg.batch_users, cfg.rho, rng) & ~withheld[pick]
            batch = [(train[i].user, list(train[i].history), train[i].target)
                     for i in pick[mine]]
            later = None if futures is None else [futures[i] for i in pick[mine]]
            row = a2po_step(p, batch, cfg=cfg, judged=judged[mine], semantic=job.semantic,
                            values=job.values, gen=gen, later=later, ranker=job.ranker,
                            ranker_top=job.ranker_top)
            row = {"step": s, **mean_over_processes(world, row,
                                                    sums=("rollouts_with_gradient",))}
            stop_here = stop_after is not None and s - first + 1 >= stop_after
            if s % cfg.eval_every == 0 or s == cfg.steps:
                now = _valid_scores(p, valid, world)
                row["valid_ndcg@10"] = float(now.mean())
                if row["valid_ndcg@10"] > state["best"]["valid_ndcg@10"]:
                    state["best"] = {"step": s, "valid_ndcg@10": row["valid_ndcg@10"]}
                    best_state = {k: v.detach().clone()
                                  for k, v in p.model.state_dict().items()}
                    scores["best"] = now
                if on_row and world.main:
                    on_row(row)
            rows.append(row)
            state["step"] = s
            state["seconds"] += time.perf_counter() - t_step
            if world.main and ("valid_ndcg@10" in row or stop_here) and s < cfg.steps:
                _checkpoint(job, p, best_state=best_state, rng=rng, gen=gen, state=state,
                            rows=rows, scores=scores)
            bar.note(f"hit {row['hit_fraction']:.2f} "
                     f"best N@10 {state['best']['valid_ndcg@10']:.4f}")
            bar.advance()
            if stop_here and s < cfg.steps:
                return {"finished": False, "step": s,
                        "checkpoint": str(resume_dir(job.run.path, job.step))}
    summary = _summary(job, state, rows, cfg.steps - first + 1, time.perf_counter() - t_call)
    summary["selection"] = select(scores["start"], scores["best"], state["best"]["step"],
                                  cfg.select_alpha)
    if summary["selection"]["kept_step"] == 0:
        best_state = p.ref.state_dict()  # the start: the SFT weights, frozen in the reference
    if world.main:
        p.model.load_state_dict(best_state)
        _write(job, p, gen_cfg, rows, summary)
    return summary


def _summary(job: _Job, state: dict, rows: list[dict], done: int, seconds: float) -> dict:
    """What the run did; ``time_share``: the fraction of step time in each phase."""
    timed = rows[1:]
    split = {phase: round(sum(r[f"{phase}_s"] for r in timed), 2)
             for phase in ("rollout", "reward", "update")}
    total = sum(split.values()) or 1.0
    cfg = job.cfg
    return {"advantage": cfg.advantage, "semantic": job.how, "best": state["best"],
            "steps": cfg.steps, "processes": job.world.size,
            "groups_per_s": round(done * cfg.batch_users / seconds, 2) if done else None,
            "time_share": {k: round(v / total, 3) for k, v in split.items()},
            "seconds": round(state["seconds"], 1), "finished": True}


def _write(job: _Job, p: Policy, gen_cfg, rows: list[dict], summary: dict) -> None:
    """RUN/a2po[-tag] with the best weights, swapped in whole; the checkpoint is removed."""
    cfg = job.cfg
    with staged_step(job.run.path, job.step) as tmp:
        save_generator(p.model, gen_cfg, tmp / "best")
        write_jsonl(tmp / "train_log.jsonl", rows)
        atomic_write_json(tmp / "summary.json", summary)
        write_manifest(tmp, step=job.step, config=cfg.to_dict(),
                       seed=cfg.seed, started=job.started, inputs=job.digests,
                       dataset=job.run.data.manifest.dataset,
                       extra={"max_history": p.max_history})
    shutil.rmtree(resume_dir(job.run.path, job.step), ignore_errors=True)
    job.run.forget(job.step)
