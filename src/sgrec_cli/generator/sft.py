"""Supervised fine-tuning (teacher forcing) of the SID generator, with exact resume.

Each training example is (history -> next item): the encoder reads the most recent
``max_history`` items (RUN/data's setting; one position per item or per SID token, see
``GeneratorConfig.input``), the decoder is taught the target's L SID tokens. After every epoch
Recall@10 / NDCG@10 are measured on the validation users (all by default, or a fixed, seeded
subset) with trie-constrained beam search, history items excluded (as `sgrec eval` does); the
best epoch (by NDCG@10) is kept in ``OUT/best/``.

Resume: at the end of every epoch ``OUT/checkpoint/`` is replaced atomically (checkpoint.py) by
the model weights, the AdamW and scheduler states and every random state the next epoch depends
on (the shuffling generator and torch's global RNG, which drives dropout). A run resumed from it
replays exactly the epochs an uninterrupted run would have run, so it ends with the same log (up
to the ``seconds`` column) and bit-identical best weights, provided the config is unchanged (in
particular ``epochs``, which sets the learning-rate schedule).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import atomic_write_json
from ..checkpoint import (
    check_resumable,
    load_training_state,
    read_state,
    rng_tensors,
    save_training_state,
    write_folder_atomically,
    write_log,
)
from ..data.config import PrepareConfig
from ..data.split import Example
from ..distributed import World, barrier
from ..distributed import setup as setup_world
from ..errors import ConfigError
from ..eval.metrics import per_user_metrics, ranks_of_targets, summarize
from ..progress import progress_bar, quiet
from ..sampling import seeded_subset
from ..validate import field_default, is_int
from .config import SFT_EVAL_K as EVAL_K
from .config import GeneratorConfig, SFTConfig
from .decode import choose_weight, hybrid_weight_curve, predict_unseen
from .model import LEGACY_DEFAULTS, build_model, load_generator, save_generator
from .objectives import LossSettings, n_targets, prefix_loss, sequence_loss
from .sequences import sequence_tensors
from .tokens import SidVocab
from .trie import SidTrie

LOG = "train_log.jsonl"
BEST = "best"
CHECKPOINT = "checkpoint"
DEFAULT_MAX_HISTORY = field_default(PrepareConfig, "max_history")
VALID_BATCH = 256  # validation users (and examples) per batch, whatever the training batch
# the training options a checkpoint written before they existed leaves out: what it ran with
LEGACY_SFT = {"objective": "prefix", "item_weight": 0.0, "first_level_weight": 1.0,
              "hard_negatives": 0}
# config fields that may change between an interrupted run and its resumption (epochs may be
# raised to extend a finished run, at the cost of exactness: the resume says so)
_RESUMABLE_CHANGES = {"epochs", "patience", "device"}


# --------------------------------------------------------------------------------------- data


def encode_examples(
    examples: Sequence[Example], codes: np.ndarray, vocab: SidVocab, max_history: int,
    per_item: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors: ``input_ids`` and ``attention_mask`` LongTensor (B, T) of the
    histories (right-padded; ``per_item``: one position per item), ``labels`` LongTensor (B, L),
    the targets' SID tokens (T5 shifts them right behind its decoder start token itself), and
    ``targets`` LongTensor (B,), the target items (the dense head's labels)."""
    if not examples:
        raise ConfigError("no examples to encode")
    input_ids, attention_mask = vocab.encode_history(
        [ex.history for ex in examples], codes, max_history, per_item=per_item
    )
    targets = [ex.target for ex in examples]
    labels = vocab.target_tokens(targets, codes)
    return input_ids, attention_mask, labels, torch.as_tensor(targets, dtype=torch.long)


def _forward(model, ids, mask, labels, targets, device, dense: bool):
    """The forward of one batch (``model`` may be DDP-wrapped): the SID loss, plus the dense
    head's when ``dense``."""
    items = targets.to(device) if dense else None
    return model(input_ids=ids.to(device), attention_mask=mask.to(device),
                 labels=labels.to(device), items=items)


@torch.no_grad()
def _valid_loss(model, tensors: tuple[torch.Tensor, ...], batch_size: int) -> float:
    """Teacher-forced cross-entropy per SID token on the validation examples, given as
    ``encode_examples`` tensors (shows over-fitting next to the training loss); with a dense
    head, plus its cross-entropy per example."""
    model.eval()
    device = next(model.parameters()).device
    ids, mask, labels, targets = tensors
    total = 0.0
    for start in range(0, labels.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        out = _forward(model, ids[sl], mask[sl], labels[sl], targets[sl], device,
                       model.hybrid)
        total += float(out.loss) * labels[sl].shape[0]
    return total / labels.shape[0]


def _evaluate(model, vocab, trie, valid: Sequence[Example], codes, cfg: SFTConfig,
              max_history: int) -> dict:
    """Recall / NDCG@10 of the validation users, their history items excluded as `sgrec eval`
    excludes them: the ``num_beams`` beams are searched and the first 10 non-history items
    kept (`sgrec eval` widens the search by the longest history instead, so a user whose
    beams are mostly history items can differ; at 20 beams that is rare)."""
    topk, _ = predict_unseen(model, vocab, trie, [ex.history for ex in valid], codes, EVAL_K,
                             cfg.num_beams, batch=VALID_BATCH, max_history=max_history)
    ranks = ranks_of_targets(topk, np.asarray([ex.target for ex in valid], dtype=np.int64))
    return summarize(per_user_metrics(ranks, ks=(EVAL_K,)))


def length_grouped_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, group: int = 50
) -> list[torch.Tensor]:
    """Shuffled mini-batches of example indices whose lengths are alike.

    Why: histories are short on average (Scientific: 12 tokens) but padded to the longest in the
    batch (61), so random batches spend most of their compute on padding. As in
    ``transformers``' ``group_by_length``: shuffle, cut into groups of ``group`` batches, sort each
    group by length, cut it into batches, then shuffle the batch order. Every index appears
    exactly once; the order depends only on ``generator``'s state (so resume stays exact).
    """
    n = lengths.shape[0]
    perm = torch.randperm(n, generator=generator)
    span = batch_size * group
    batches: list[torch.Tensor] = []
    for start in range(0, n, span):
        chunk = perm[start : start + span]
        # stable sort, longest first, so ties keep the shuffled order
        chunk = chunk[torch.sort(lengths[chunk], descending=True, stable=True).indices]
        batches.extend(chunk.split(batch_size))
    order = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in order.tolist()]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total`` steps."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f




# ----------------------------------------------------------------------------------- training


@dataclass
class _Trainer:
    """What the epoch loop works on, built once by ``_setup``."""

    cfg: SFTConfig
    world: World
    device: torch.device
    model: Any  # T5ForConditionalGeneration
    ddp: Any  # the model, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    shuffle: torch.Generator
    vocab: SidVocab
    trie: SidTrie
    codes: np.ndarray
    train: tuple[torch.Tensor, ...]  # ids, mask, labels, targets (sequence: + trained)
    how: LossSettings
    lengths: torch.Tensor
    valid: list[Example]
    valid_tensors: tuple[torch.Tensor, ...]
    steps_per_epoch: int
    max_history: int
    warmup_steps: int  # of the learning-rate schedule (cfg.warmup_steps resolved for this run)


def _setup(train_examples, valid_examples, codes, codebook_sizes, cfg: SFTConfig,
           world: World, max_history: int, text: np.ndarray | None) -> _Trainer:
    device = torch.device(world.device)
    codes = np.asarray(codes, dtype=np.int64)
    vocab = SidVocab(codebook_sizes)
    trie = SidTrie.from_codes(codes, list(codebook_sizes)).to(device)
    per_item = cfg.model.input == "items"
    if cfg.objective == "sequence":
        train = sequence_tensors(train_examples, codes, vocab, max_history)
    else:
        train = encode_examples(train_examples, codes, vocab, max_history, per_item)
    valid = seeded_subset(valid_examples, cfg.valid_users, cfg.seed)
    # length_grouped_batches makes exactly ceil(n / batch) batches; each process takes 1/world
    rows = train[0].shape[0]
    steps_per_epoch = math.ceil(rows / cfg.batch_size) // world.size
    if steps_per_epoch < 1:
        raise ConfigError(f"{rows} training rows make fewer batches than "
                          f"the {world.size} processes; lower --batch-size")
    total_steps = steps_per_epoch * cfg.epochs
    warmup = cfg.warmup(total_steps)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, vocab, codes=codes, text=text).to(device)
    ddp = model
    if world.distributed:
        torch.manual_seed(cfg.seed + 7919 * world.rank)  # own dropout masks per process
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(warmup, total_steps))
    how = LossSettings(vocab, trie, cfg.item_weight, cfg.first_level_weight,
                       cfg.hard_negatives)
    return _Trainer(cfg, world, device, model, ddp, optimizer, scheduler,
                    torch.Generator().manual_seed(cfg.seed), vocab, trie, codes,
                    train, how, train[1].sum(1), valid,
                    encode_examples(valid, codes, vocab, max_history, per_item),
                    steps_per_epoch, max_history, warmup)


def _run_config(t: _Trainer) -> dict:
    """What a checkpoint records and a resume must match: the options and the history length."""
    return {**t.cfg.to_dict(), "max_history": t.max_history}


def _fresh_state(t: _Trainer, inputs: dict[str, str]) -> dict:
    return {"epoch": 0, "best_score": None, "best_epoch": 0, "best_metrics": {}, "stale": 0,
            "stopped": False, "seconds": 0.0, "config": _run_config(t), "inputs": inputs}


def _start(t: _Trainer, out_dir: Path, resume: bool, say,
           inputs: dict[str, str]) -> tuple[dict, list[dict]]:
    """(state, log rows): resumed from ``OUT/checkpoint`` or fresh (stale folders removed)."""
    ckpt, log_path = out_dir / CHECKPOINT, out_dir / LOG
    if resume and (ckpt / "state.json").is_file():
        saved = read_state(ckpt)
        model_opts = saved.get("config", {}).get("model")
        if isinstance(model_opts, dict):  # made before a model option existed: the value
            # it ran with (the default of the time)
            saved["config"]["model"] = {**asdict(GeneratorConfig()), **LEGACY_DEFAULTS,
                                        **model_opts}
            saved["config"] = {**LEGACY_SFT, **saved["config"]}
        if t.cfg.warmup_steps is None and saved.get("config", {}).get("warmup_steps") \
                == t.warmup_steps:
            saved["config"]["warmup_steps"] = None  # recorded as a number: the same schedule
        check_resumable(saved, config=_run_config(t), may_change=_RESUMABLE_CHANGES,
                        inputs=inputs, folder=ckpt)
        scheduler_state = load_training_state(
            ckpt, model=t.model, optimizer=t.optimizer, generators={"shuffle": t.shuffle},
            device=t.device,
            extra=lambda f: json.loads((f / "scheduler.json").read_text(encoding="utf-8")))
        t.scheduler.load_state_dict(scheduler_state)
        state = {**saved, "config": _run_config(t)}
        # epochs/patience may have been raised to extend a run (the LR schedule then follows the
        # new budget, so the result is no longer that of one uninterrupted run)
        state["stopped"] = state["stale"] >= t.cfg.patience
        rows = _read_log(log_path, state["epoch"])
        best = "none yet" if state["best_score"] is None else f"{state['best_score']:.4f}"
        say(f"resuming after epoch {state['epoch']} (best valid NDCG@{EVAL_K} {best} at epoch "
            f"{state['best_epoch']})")
        was = saved.get("config", {}).get("epochs")
        if was is not None and was != t.cfg.epochs:
            say(f"warning: --epochs {t.cfg.epochs} differs from the interrupted run's {was}: "
                "the learning-rate schedule now decays over the new budget, so the result is "
                "not that of one uninterrupted run")
    else:
        if t.world.main:
            for stale_dir in (ckpt, out_dir / BEST):
                shutil.rmtree(stale_dir, ignore_errors=True)
        state, rows = _fresh_state(t, inputs), []
    if t.world.main:
        write_log(log_path, rows)
    return state, rows


def _read_log(path: Path, n_epochs: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r.get("epoch", 0) <= n_epochs]


def _train_epoch(t: _Trainer, advance: Callable[[], None]) -> float:
    """One pass over this process's share of the batches; the mean training loss per
    target."""
    t.model.train()
    batch_loss = sequence_loss if t.cfg.objective == "sequence" else prefix_loss
    loss_sum, seen = 0.0, 0
    batches = length_grouped_batches(t.lengths, t.cfg.batch_size, t.shuffle)
    # every process draws the same batches and takes its own equal share
    w = t.world
    for idx in batches[w.rank : t.steps_per_epoch * w.size : w.size]:
        width = int(t.lengths[idx].max())
        batch = _rows(t.train, idx, width, t.cfg.objective)
        loss = batch_loss(t.ddp, batch, t.how, t.device)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), 1.0)
        t.optimizer.step()
        t.scheduler.step()
        count = n_targets(batch, t.cfg.objective)
        loss_sum += float(loss.detach()) * count
        seen += count
        advance()
    if w.distributed:
        totals = torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=t.device)
        torch.distributed.all_reduce(totals)
        loss_sum, seen = float(totals[0]), int(totals[1])
    return loss_sum / seen


def _rows(train: tuple[torch.Tensor, ...], idx: torch.Tensor, width: int, objective: str
          ) -> tuple[torch.Tensor, ...]:
    """A batch's rows, cut to its longest history (``width``): the inputs of an example, every
    tensor of a sequence window (all are per position)."""
    if objective == "sequence":
        return tuple(x[idx, :width] for x in train)
    ids, mask, labels, targets = train
    return ids[idx, :width], mask[idx, :width], labels[idx], targets[idx]


def _validate(t: _Trainer, epoch: int, loss: float, seconds_from: float) -> tuple[dict, dict]:
    """(log row, validation metrics) after an epoch."""
    metrics = _evaluate(t.model, t.vocab, t.trie, t.valid, t.codes, t.cfg, t.max_history)
    valid_loss = _valid_loss(t.model, t.valid_tensors, VALID_BATCH)
    row = {"epoch": epoch, "loss": loss, "valid_loss": valid_loss,
           "lr": t.optimizer.param_groups[0]["lr"],
           f"valid_recall@{EVAL_K}": metrics[f"recall@{EVAL_K}"],
           f"valid_ndcg@{EVAL_K}": metrics[f"ndcg@{EVAL_K}"],
           "seconds": round(time.time() - seconds_from, 3)}
    return row, metrics


def _keep_best(t: _Trainer, state: dict, row: dict, metrics: dict, out_dir: Path, say) -> None:
    """Update the best/early-stopping state; write OUT/best when this epoch is the best."""
    score = row[f"valid_ndcg@{EVAL_K}"]
    if state["best_score"] is None or score > state["best_score"]:
        state.update(best_score=score, best_epoch=row["epoch"], best_metrics=metrics, stale=0)
        if t.world.main:
            write_folder_atomically(out_dir / BEST,
                                    lambda tmp: save_generator(t.model, t.cfg.model, tmp))
    else:
        state["stale"] += 1
    state["epoch"] = row["epoch"]
    state["seconds"] += row["seconds"]
    if state["stale"] >= t.cfg.patience:
        state["stopped"] = True
        say(f"early stop: no better NDCG@{EVAL_K} for {t.cfg.patience} epochs")


def _save(t: _Trainer, state: dict, out_dir: Path) -> None:
    save_training_state(
        out_dir / CHECKPOINT, model=t.model, optimizer=t.optimizer,
        rng=rng_tensors({"shuffle": t.shuffle}, t.device), state=state,
        extra=lambda tmp: atomic_write_json(tmp / "scheduler.json", t.scheduler.state_dict()))


def _tune_hybrid_weight(t: _Trainer, out_dir: Path) -> dict:
    """Choose the hybrid weight of the best epoch's model on the validation users and save it
    into OUT/best (unless ``SFTConfig.hybrid_weight`` fixes it); the curve, for the summary."""
    best, gen_cfg, _ = load_generator(out_dir / BEST, t.device)
    curve = hybrid_weight_curve(best, t.vocab, t.trie, [ex.history for ex in t.valid],
                                [ex.target for ex in t.valid], t.codes, t.cfg.num_beams,
                                k=EVAL_K, batch=VALID_BATCH, max_history=t.max_history)
    chosen = choose_weight(curve, t.cfg.model.hybrid_weight)
    write_folder_atomically(out_dir / BEST, lambda tmp: save_generator(
        best, replace(gen_cfg, hybrid_weight=chosen), tmp))
    return {"chosen": chosen, "trained_with": t.cfg.model.hybrid_weight,
            f"valid_ndcg@{EVAL_K}": {str(w): v for w, v in curve.items()}}


def train_sft(
    train_examples: Sequence[Example],
    valid_examples: Sequence[Example],
    codes: np.ndarray,
    codebook_sizes: Sequence[int],
    cfg: SFTConfig,
    out_dir: Path,
    *,
    max_history: int = DEFAULT_MAX_HISTORY,
    text: np.ndarray | None = None,
    inputs: dict[str, str] | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
    world: World | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the generator; returns a summary (best epoch and metrics, epochs run, seconds).

    ``max_history``: history items the encoder reads (RUN/data's setting). ``text``: (N, E)
    item text embeddings, for ``cfg.model.text``. ``inputs``: the
    artifacts trained on (manifest digests), recorded in the checkpoint; a resume from other
    inputs is refused. ``resume``
    continues from ``out_dir/checkpoint`` when present (otherwise starts afresh).
    ``on_epoch`` receives each epoch's log row (the CLI prints it). ``stop_after`` runs at
    most that many epochs in this call and leaves a resumable checkpoint (a time-sliced job;
    also how the tests interrupt a run without changing its schedule). ``world``: under
    torchrun, every process takes its share of each epoch's batches (DDP averages the
    gradients), every process validates the same (synchronised) weights so all take the same
    early-stopping decision, and only the main process writes files. Exact resume is
    guaranteed for a single process only (each process has its own dropout RNG).
    """
    cfg.validate()
    if not train_examples:
        raise ConfigError("no training examples")
    if not valid_examples:
        raise ConfigError("no validation examples")
    if stop_after is not None and (not is_int(stop_after) or stop_after < 1):
        raise ConfigError(f"stop_after {stop_after!r} must be an integer >= 1")
    world = world or setup_world(cfg.device)
    say = (log or quiet) if world.main else quiet
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = _setup(train_examples, valid_examples, codes, codebook_sizes, cfg, world, max_history,
               text)
    state, rows = _start(t, out_dir, resume, say, inputs or {})
    run_here = _epochs(t, state, rows, out_dir, say=say, on_epoch=on_epoch,
                       stop_after=stop_after, progress=progress)
    finished = bool(state["stopped"]) or state["epoch"] >= cfg.epochs
    modes = {k: getattr(cfg.model, k) for k in ("input", "text", "ids", "score", "hybrid_weight")}
    tuned = None
    if finished and t.model.hybrid and cfg.tune_hybrid_weight and state["best_epoch"]:
        if world.main:
            say("choosing the hybrid weight on the validation users")
            tuned = _tune_hybrid_weight(t, out_dir)
            modes["hybrid_weight"] = tuned["chosen"]
        barrier(world)
    return {
        "best_epoch": state["best_epoch"],
        "best": {f"valid_{k}": v for k, v in state["best_metrics"].items()},
        "epochs_run": state["epoch"],
        "epochs_this_call": run_here,
        "stopped_early": bool(state["stopped"]) and state["epoch"] < cfg.epochs,
        "finished": finished,
        "seconds": round(state["seconds"], 3),
        "wall_seconds": round(time.time() - started, 3),
        "valid_users": len(t.valid),
        "train_examples": len(train_examples),
        "max_history": max_history,
        "warmup_steps": t.warmup_steps,
        "modes": modes,
        **({"hybrid_weight": tuned} if tuned else {}),
    }


def _epochs(t: _Trainer, state: dict, rows: list[dict], out_dir: Path, *, say, on_epoch,
            stop_after: int | None, progress: bool) -> int:
    """Train and validate epoch after epoch until early stopping, the budget or ``stop_after``
    epochs in this call; the number of epochs run here."""
    world, cfg = t.world, t.cfg
    run_here = 0
    with progress_bar(progress and world.main, f"sft (up to {cfg.epochs} epochs)",
                      total=t.steps_per_epoch * (cfg.epochs - state["epoch"]),
                      log=say) as bar:
        while not state["stopped"] and state["epoch"] < cfg.epochs:
            if stop_after is not None and run_here >= stop_after:
                break
            t0 = time.time()
            loss = _train_epoch(t, bar.advance)
            row, metrics = _validate(t, state["epoch"] + 1, loss, t0)
            rows.append(row)
            if world.main:
                write_log(out_dir / LOG, rows)
                if on_epoch:
                    on_epoch(row)
            bar.note(f"epoch {row['epoch']} loss {loss:.3f} "
                     f"valid NDCG@{EVAL_K} {row[f'valid_ndcg@{EVAL_K}']:.4f}")
            _keep_best(t, state, row, metrics, out_dir, bar.print if world.main else quiet)
            if world.main:
                _save(t, state, out_dir)
            barrier(world)
            run_here += 1
    return run_here
