"""`sgrec train --a2po`: RUN/sft + RUN/judge -> RUN/a2po (or RUN/a2po-<tag>).

The policy starts from the SFT generator; a frozen copy is the KL reference. Semantic rewards
come from the judge: recomputed for any (history, item) from the item embeddings and the
judge's aggregator when the judge used the embedding backend, otherwise looked up in the judge's
table of (user, item) rewards (missing -> the group falls back to A_biz). Every ``eval_every``
steps the policy is scored on validation users (NDCG@10, history excluded); the best state,
the SFT start included, is kept in ``best/``.

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
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from ..artifacts import (
    atomic_write_json,
    load_manifest,
    read_jsonl,
    staged_step,
    write_jsonl,
    write_manifest,
)
from ..checkpoint import optimizer_from_flat, optimizer_to_flat, write_folder_atomically
from ..data.store import load_data
from ..errors import ArtifactError, ConfigError
from ..eval.metrics import per_user_metrics, ranks_of_targets
from ..generator.model import load_generator, save_generator
from ..generator.trie import SidTrie
from ..progress import progress_bar
from ..recommend import generator_top_items
from ..sids.build import load_sids
from .a2po import A2POConfig, PolicyScorer, SemanticFn, a2po_step, later_training_items
from .advantages import judge_mask

CKPT_FORMAT = 1
# options that may differ on --resume without changing what is computed (steps: extend a run)
_RESUMABLE_CHANGES = {"steps", "device"}


def semantic_reward(run: Path, emb: np.ndarray, sids_digest: str) -> tuple[SemanticFn, str]:
    """(r_sem function, how it is computed) from a finished RUN/judge built on these SIDs."""
    from safetensors.numpy import load_file

    from ..judge.aggregator import Aggregator, user_features
    from ..judge.embedding import EmbeddingBackend
    from ..judge.step import load_rewards

    users, items, rewards, manifest = load_rewards(run)
    folder = Path(run) / "judge"
    if manifest["inputs"].get("sids/manifest.json") != sids_digest:
        raise ArtifactError("the judge was built on other SIDs / embeddings; run `sgrec judge` "
                            "again", folder / "manifest.json")
    if manifest["config"].get("backend") == "embedding":
        meta = json.loads((folder / "aggregator.json").read_text(encoding="utf-8"))
        state = {k: torch.from_numpy(v) for k, v in
                 load_file(str(folder / "aggregator.safetensors")).items()}
        agg = Aggregator.from_state_dict(state, meta["aspects"])
        backend = EmbeddingBackend(emb)

        def live(user, history, cand):
            s, _, _ = backend.score(history, cand)  # (G, A)
            w = agg.weights(user_features([list(history)], emb))[0]  # (A,)
            return s @ w

        return live, "embedding (recomputed per rollout)"
    table = {(int(u), int(i)): float(r) for u, i, r in zip(users, items, rewards, strict=True)}

    def lookup(user, history, cand):
        return np.asarray([table.get((int(user), int(i)), np.nan) for i in cand])

    return lookup, f"judge table ({manifest['config'].get('backend')}, {len(table):,} pairs)"


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


def _valid_ndcg(model, vocab, trie, codes, valid, max_history: int, world) -> float:
    """NDCG@10 on validation targets, history excluded: the protocol of `sgrec eval`. Under
    torchrun each process scores every world.size-th user and the sums are combined."""
    mine = valid[world.rank::world.size]
    total = 0.0
    if mine:
        top, _ = generator_top_items(model, vocab, trie, codes, [list(e.history) for e in mine],
                                     10, 20, max_history, exclude_history=True, fill=True)
        ranks = ranks_of_targets(top, np.asarray([e.target for e in mine], dtype=np.int64))
        total = float(per_user_metrics(ranks, ks=(10,))["ndcg@10"].sum())
    if world.distributed:
        t = torch.tensor([total], dtype=torch.float64, device=world.device)
        torch.distributed.all_reduce(t)
        total = float(t.item())
    return total / len(valid)


def resume_dir(run: Path, step: str) -> Path:
    return Path(run) / f".{step}.resume"


def _save_resume(folder: Path, model, opt, best_state, rng, gen, state, rows) -> None:
    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in best_state.items()},
                  str(tmp / "best.safetensors"))
        tensors, meta = optimizer_to_flat(opt.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "optimizer.json", meta)
        save_file({"sample": gen.get_state()}, str(tmp / "rng.safetensors"))
        write_jsonl(tmp / "train_log.jsonl", rows)
        atomic_write_json(tmp / "state.json", {**state, "numpy_rng": rng.bit_generator.state})

    write_folder_atomically(folder, fill)


def _load_resume(folder: Path, cfg: A2POConfig, inputs: dict[str, str], model, opt, rng, gen,
                 device):
    """(state, best_state, rows) of a checkpoint, after loading it into model/opt/rng/gen."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if state.get("format_version") != CKPT_FORMAT:
            raise ValueError(f"format {state.get('format_version')!r}")
        stale = sorted(k.split("/")[0] for k, v in inputs.items()
                       if state["inputs"].get(k) != v)
        if stale:
            raise ArtifactError(f"the checkpoint was made from other {', '.join(stale)} "
                                "artifacts; train again without --resume", folder)
        changed = sorted(k for k, v in cfg.to_dict().items()
                         if k not in _RESUMABLE_CHANGES and state["config"].get(k) != v)
        if changed:
            raise ConfigError(f"cannot resume: options {changed} differ from the interrupted "
                              "run; use the same values or train without --resume")
        load_model(model, str(folder / "model.safetensors"), strict=True, device=str(device))
        best_state = {k: v.to(device) for k, v in
                      load_file(str(folder / "best.safetensors")).items()}
        meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
        opt.load_state_dict(optimizer_from_flat(
            load_file(str(folder / "optimizer.safetensors")), meta))
        gen.set_state(load_file(str(folder / "rng.safetensors"))["sample"])
        rng.bit_generator.state = state.pop("numpy_rng")
        rows = read_jsonl(folder / "train_log.jsonl")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise ArtifactError(f"unusable A2PO checkpoint ({e}); train again without --resume",
                            folder) from None
    return state, best_state, rows


def run_a2po(run: Path, cfg: A2POConfig, tag: str | None = None, resume: bool = False,
             progress: bool = True, log=None, stop_after: int | None = None) -> dict:
    """Fine-tune RUN/sft into RUN/a2po[-tag]; returns the summary. ``stop_after`` ends this call
    after that many steps with a checkpoint to --resume (time-sliced jobs; the tests)."""
    from ..distributed import setup, teardown

    started = time.time()
    run = Path(run)
    step = "a2po" if not tag else f"a2po-{tag}"
    data = load_data(run)
    sids = load_sids(run)
    sft_m = load_manifest(run, "sft")
    if sft_m.data["inputs"].get("sids/manifest.json") != sids.manifest.digest:
        raise ArtifactError("the generator was trained on other SIDs; run `sgrec train` again",
                            sft_m.path)
    judge_m = load_manifest(run, "judge")
    values = item_values(data.items()) if cfg.business == "value" else None
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after {stop_after!r} must be >= 1")
    semantic, how = semantic_reward(run, sids.embeddings(), sids.manifest.digest)
    world = setup(cfg.device)
    try:
        # the DDP-wrapped model lives only inside _train, so it is freed before the process
        # group is destroyed (a DDP reducer still alive then hangs the exit)
        inputs = _Inputs(run, step, tag, data, sids, sft_m, judge_m, semantic, how, values, started)
        return _train(inputs, cfg, world, resume, progress, log, stop_after)
    finally:
        teardown(world)


@dataclass(frozen=True)
class _Inputs:
    """What run_a2po checked before training: the run's artifacts and the reward functions."""

    run: Path
    step: str
    tag: str | None
    data: Any
    sids: Any
    sft_m: Any
    judge_m: Any
    semantic: SemanticFn
    how: str
    values: np.ndarray | None
    started: float

    @property
    def digests(self) -> dict[str, str]:
        """The artifacts the result depends on, by manifest hash."""
        return {"data/manifest.json": self.data.manifest.digest,
                "sids/manifest.json": self.sids.manifest.digest,
                "sft/manifest.json": self.sft_m.digest,
                "judge/manifest.json": self.judge_m.digest}


def _train(inp: _Inputs, cfg: A2POConfig, world, resume: bool, progress: bool, log,
           stop_after: int | None) -> dict:
    from ..distributed import mean_over_processes

    say = (log or (lambda _m: None)) if world.main else (lambda _m: None)
    run, step, data, sft_m = inp.run, inp.step, inp.data, inp.sft_m
    semantic, how, values, codes = inp.semantic, inp.how, inp.values, inp.sids.codes
    if cfg.batch_users % world.size:
        raise ConfigError(f"--batch-users {cfg.batch_users} must be a multiple of the "
                          f"{world.size} processes")
    device = torch.device(world.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model, gen_cfg, vocab = load_generator(sft_m.path.parent / "best", device=str(device))
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    scorer = PolicyScorer(model, vocab)
    if world.distributed:
        scorer = torch.nn.parallel.DistributedDataParallel(
            scorer, device_ids=[device.index] if device.type == "cuda" else None)
    max_history = int(sft_m.config.get("max_history", 20))
    trie = SidTrie.from_codes(codes, vocab.codebook_sizes)
    say(f"a2po: advantage {cfg.advantage}, G={cfg.group_size}, rho={cfg.rho}, rollout "
        f"{cfg.rollout}, semantic reward from the {how}")
    train = data.split("train")
    valid = data.split("valid")
    futures = (later_training_items(train, data.sequences()) if cfg.business == "future"
               else None)
    if cfg.valid_users and cfg.valid_users < len(valid):
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(valid), cfg.valid_users,
                                                              replace=False))
        valid = [valid[i] for i in pick]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)

    ckpt = resume_dir(run, step)
    if resume and (ckpt / "state.json").is_file():
        state, best_state, rows = _load_resume(ckpt, cfg, inp.digests, model, opt, rng, gen,
                                              device)
        state["config"] = cfg.to_dict()
        say(f"resuming after step {state['step']} (best valid NDCG@10 "
            f"{state['best']['valid_ndcg@10']:.4f} at step {state['best']['step']})")
    else:
        if resume:
            say(f"nothing to resume in {ckpt}: starting afresh")
        if world.main:
            shutil.rmtree(ckpt, ignore_errors=True)
        ndcg = _valid_ndcg(model, vocab, trie, codes, valid, max_history, world)
        state = {"format_version": CKPT_FORMAT, "step": 0, "seconds": 0.0,
                 "best": {"step": 0, "valid_ndcg@10": ndcg}, "config": cfg.to_dict(),
                 "inputs": inp.digests}
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rows = [{"step": 0, "valid_ndcg@10": ndcg}]
    mine = slice(world.rank, None, world.size)
    first = state["step"] + 1
    t_call = time.perf_counter()
    with progress_bar(progress and world.main) as bar:
        task = bar.add_task(f"a2po ({cfg.advantage})", total=cfg.steps,
                            completed=state["step"], info="")
        for s in range(first, cfg.steps + 1):
            t_step = time.perf_counter()
            pick = rng.choice(len(train), size=cfg.batch_users, replace=False)
            judged = judge_mask(cfg.batch_users, cfg.rho, rng)
            batch = [(train[i].user, list(train[i].history), train[i].target)
                     for i in pick[mine]]
            later = None if futures is None else [futures[i] for i in pick[mine]]
            row = a2po_step(model, scorer, ref, opt, cfg, vocab, trie, codes, batch,
                            judged[mine], semantic, max_history, values, gen, world, later)
            row = {"step": s, **mean_over_processes(world, row,
                                                    sums=("rollouts_with_gradient",))}
            stop_here = stop_after is not None and s - first + 1 >= stop_after
            if s % cfg.eval_every == 0 or s == cfg.steps:
                row["valid_ndcg@10"] = _valid_ndcg(model, vocab, trie, codes, valid,
                                                   max_history, world)
                if row["valid_ndcg@10"] > state["best"]["valid_ndcg@10"]:
                    state["best"] = {"step": s, "valid_ndcg@10": row["valid_ndcg@10"]}
                    best_state = {k: v.detach().clone()
                                  for k, v in model.state_dict().items()}
            rows.append(row)
            state["step"] = s
            state["seconds"] += time.perf_counter() - t_step
            if world.main and ("valid_ndcg@10" in row or stop_here) and s < cfg.steps:
                _save_resume(ckpt, model, opt, best_state, rng, gen, state, rows)
            bar.update(task, advance=1, info=f"hit {row['hit_fraction']:.2f} "
                                             f"best N@10 {state['best']['valid_ndcg@10']:.4f}")
            if stop_here and s < cfg.steps:
                return {"finished": False, "step": s, "checkpoint": str(ckpt)}
    seconds = time.perf_counter() - t_call
    done = cfg.steps - first + 1
    timed = rows[1:]
    split = {k: round(sum(r[k] for r in timed), 2)
             for k in ("rollout_s", "reward_s", "update_s")}
    total = sum(split.values()) or 1.0
    summary = {"advantage": cfg.advantage, "semantic": how, "best": state["best"],
               "steps": cfg.steps, "processes": world.size,
               "groups_per_s": round(done * cfg.batch_users / seconds, 2) if done else None,
               "time_share": {k: round(v / total, 3) for k, v in split.items()},
               "seconds": round(state["seconds"], 1), "finished": True}
    if world.main:
        model.load_state_dict(best_state)
        with staged_step(run, step) as tmp:
            save_generator(model, gen_cfg, tmp / "best")
            write_jsonl(tmp / "train_log.jsonl", rows)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                              encoding="utf-8")
            write_manifest(tmp, step=step, config={**cfg.to_dict(),
                                                   "max_history": max_history, "tag": inp.tag},
                           seed=cfg.seed, started=inp.started,
                           inputs=inp.digests,
                           dataset=data.manifest.dataset)
        shutil.rmtree(ckpt, ignore_errors=True)
    return summary
