"""Supervised fine-tuning (teacher forcing) of the SID generator, with exact resume.

Each training example is (history -> next item): the encoder reads the SID tokens of the most
recent ``max_history`` items, the decoder is taught the target's L SID tokens. After every epoch
Recall@10 / NDCG@10 are measured on a fixed, seeded subset of the validation users with
trie-constrained beam search; the best epoch (by NDCG@10) is kept in ``OUT/best/``.

Resume: at the end of every epoch ``OUT/checkpoint/`` is replaced atomically by a folder holding
the model weights, the AdamW state and every random state the next epoch depends on (the shuffling
generator and torch's global RNG, which drives dropout). Everything is safetensors or JSON, never
pickle. A run resumed from it replays exactly the epochs an uninterrupted run would have run, so it
ends with the same log (up to the ``seconds`` column) and bit-identical best weights, provided the
config is unchanged (in particular ``epochs``, which sets the learning-rate schedule).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from transformers import T5ForConditionalGeneration

from ..artifacts import atomic_write_json
from ..checkpoint import optimizer_from_flat, optimizer_to_flat, write_folder_atomically
from ..config import require
from ..data.split import Example
from ..distributed import World, barrier
from ..distributed import setup as setup_world
from ..errors import ArtifactError, ConfigError
from ..eval.metrics import per_user_metrics, ranks_of_targets, summarize
from ..progress import progress_bar
from .beam import constrained_beam_search
from .model import GeneratorConfig, build_model, save_generator
from .tokens import SidVocab
from .trie import SidTrie

LOG = "train_log.jsonl"
BEST = "best"
CHECKPOINT = "checkpoint"
CKPT_FORMAT = 1
EVAL_K = 10
DEVICES = ("auto", "cpu", "cuda")
# config fields that may change between an interrupted run and its resumption without changing
# what is computed (epochs may be raised to extend a finished run, at the cost of exactness)
_RESUMABLE_CHANGES = {"epochs", "patience", "device"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class SFTConfig:
    """`sgrec train`: RUN/data + RUN/sids -> RUN/sft (the SID generator).

    epochs        maximum number of passes over the training examples
    batch_size    training examples per optimizer step
    lr            peak AdamW learning rate, reached after ``warmup_steps`` (then linear decay to 0
                  at the end of the ``epochs`` budget)
    weight_decay  AdamW decoupled weight decay
    max_history   most recent history items fed to the encoder
    num_beams     beams of the constrained beam search used for validation (>= 10)
    valid_users   validation users scored each epoch (a seeded subset; 0 = all)
    patience      stop after this many epochs without a better validation NDCG@10
    seed          model initialisation, shuffling, dropout and the validation subset
    device        auto, cpu or cuda
    model         the generator architecture (GeneratorConfig)
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_history: int = 20
    num_beams: int = 20
    valid_users: int = 1000
    patience: int = 5
    seed: int = 0
    device: str = "cpu"
    model: GeneratorConfig = field(default_factory=GeneratorConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            known = {f.name for f in fields(GeneratorConfig)}
            unknown = sorted(set(self.model) - known)
            require(not unknown, f"unknown model options {unknown}; known: {sorted(known)}")
            self.model = GeneratorConfig(**self.model)
        self.validate()

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "max_history", "num_beams", "patience"):
            value = getattr(self, name)
            require(_is_int(value) and value >= 1,
                   f"--{name.replace('_', '-')} {value!r} must be an integer >= 1")
        require(self.num_beams >= EVAL_K,
               f"--num-beams {self.num_beams!r} must be >= {EVAL_K}: validation reports "
               f"Recall@{EVAL_K} from the beams")
        for name in ("warmup_steps", "valid_users", "seed"):
            value = getattr(self, name)
            require(_is_int(value) and value >= 0,
                   f"--{name.replace('_', '-')} {value!r} must be an integer >= 0")
        require(_is_num(self.lr) and self.lr > 0, f"--lr {self.lr!r} must be > 0 (default 1e-3)")
        require(_is_num(self.weight_decay) and self.weight_decay >= 0,
               f"--weight-decay {self.weight_decay!r} must be >= 0 (default 0.01)")
        require(self.device in DEVICES,
               f"--device {self.device!r} is not known; use one of: {', '.join(DEVICES)}")
        m = self.model
        require(isinstance(m, GeneratorConfig), f"model {m!r} must be a GeneratorConfig")
        for name in ("d_model", "num_layers", "num_heads", "d_ff",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(m, name)
            require(_is_int(value) and value >= 1,
                   f"model {name} {value!r} must be an integer >= 1")
        require(m.d_model % m.num_heads == 0,
               f"model d_model {m.d_model!r} must be divisible by num_heads {m.num_heads!r}")
        require(_is_num(m.dropout) and 0 <= m.dropout < 1,
               f"model dropout {m.dropout!r} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------- data


def encode_examples(
    examples: Sequence[Example], codes: np.ndarray, vocab: SidVocab, max_history: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors: ``input_ids`` and ``attention_mask`` LongTensor (B, T) of the
    histories (right-padded), and ``labels`` LongTensor (B, L), the targets' SID tokens (T5 shifts
    them right behind its decoder start token itself)."""
    if not examples:
        raise ConfigError("no examples to encode")
    input_ids, attention_mask = vocab.encode_history(
        [ex.history for ex in examples], codes, max_history
    )
    labels = vocab.target_tokens([ex.target for ex in examples], codes)
    return input_ids, attention_mask, labels


@torch.no_grad()
def predict_topk(
    model: T5ForConditionalGeneration,
    vocab: SidVocab,
    trie: SidTrie,
    histories: Sequence[Sequence[int]],
    codes: np.ndarray,
    k: int,
    num_beams: int,
    batch: int = 256,
    max_history: int | None = None,
    with_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k item indices per user, (U, k) int64, best first, by constrained beam search.

    Items are distinct catalogue items; ``-1`` fills slots when fewer than k are reachable.
    ``max_history`` keeps only the most recent items of each history (default: all of them).
    ``with_scores`` also returns the SID log-probabilities, (U, k) float32 (-inf on empty slots).
    """
    if batch < 1:
        raise ConfigError(f"batch {batch!r} must be >= 1")
    device = next(model.parameters()).device
    n_users = len(histories)
    out = np.full((n_users, k), -1, dtype=np.int64)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    longest = max((len(h) for h in histories), default=1)
    keep = max(1, longest if max_history is None else max_history)
    # batches of alike lengths pad less; results go back to the caller's order
    order = np.argsort([-min(len(h), keep) for h in histories], kind="stable")
    for start in range(0, n_users, batch):
        rows = order[start : start + batch]
        ids, mask = vocab.encode_history([histories[i] for i in rows], codes, keep)
        items, scores = constrained_beam_search(
            model, ids.to(device), mask.to(device), trie, vocab, num_beams, topk=k
        )
        out[rows] = items.cpu().numpy()
        out_scores[rows] = scores.float().cpu().numpy()
    return (out, out_scores) if with_scores else out


@torch.no_grad()
def _valid_loss(model, tensors: tuple[torch.Tensor, ...], batch_size: int) -> float:
    """Teacher-forced cross-entropy per SID token on the validation examples, given as
    ``encode_examples`` tensors (shows over-fitting next to the training loss)."""
    model.eval()
    device = next(model.parameters()).device
    ids, mask, labels = tensors
    total = 0.0
    for start in range(0, labels.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        out = model(input_ids=ids[sl].to(device), attention_mask=mask[sl].to(device),
                    labels=labels[sl].to(device))
        total += float(out.loss) * labels[sl].shape[0]
    return total / labels.shape[0]


def _evaluate(model, vocab, trie, valid: Sequence[Example], codes, cfg: SFTConfig) -> dict:
    topk = predict_topk(
        model, vocab, trie, [ex.history for ex in valid], codes, EVAL_K, cfg.num_beams,
        batch=cfg.batch_size, max_history=cfg.max_history,
    )
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


def _valid_subset(valid: Sequence[Example], cfg: SFTConfig) -> list[Example]:
    if cfg.valid_users == 0 or cfg.valid_users >= len(valid):
        return list(valid)
    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.choice(len(valid), size=cfg.valid_users, replace=False))
    return [valid[i] for i in idx]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total`` steps."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


# ------------------------------------------------------------------------------ checkpointing


def _rng_tensors(shuffle: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    out = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _save_checkpoint(folder: Path, model, optimizer, scheduler, shuffle, device, state) -> None:
    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, meta = optimizer_to_flat(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "optimizer.json", meta)
        atomic_write_json(tmp / "scheduler.json", scheduler.state_dict())
        save_file(_rng_tensors(shuffle, device), str(tmp / "rng.safetensors"))
        atomic_write_json(tmp / "state.json", state)  # last: marks the folder complete

    write_folder_atomically(folder, fill)


def _load_checkpoint(folder: Path, model, optimizer, scheduler, shuffle, device) -> dict:
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if state.get("format_version") != CKPT_FORMAT:
            raise ArtifactError(f"unsupported checkpoint format {state.get('format_version')!r}",
                                folder)
        load_model(model, str(folder / "model.safetensors"), strict=True, device=str(device))
        meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        optimizer.load_state_dict(optimizer_from_flat(tensors, meta))
        scheduler.load_state_dict(
            json.loads((folder / "scheduler.json").read_text(encoding="utf-8"))
        )
        rng = load_file(str(folder / "rng.safetensors"))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise ArtifactError(f"unusable checkpoint ({e}); train again without --resume",
                            folder) from None
    shuffle.set_state(rng["shuffle"])
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
    return state


def _read_log(path: Path, n_epochs: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r.get("epoch", 0) <= n_epochs]


def _write_log(path: Path, rows: list[dict]) -> None:
    """Rewrite the (small) log whole, atomically, so it always matches the checkpoint."""
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------- training


def train_sft(
    train_examples: Sequence[Example],
    valid_examples: Sequence[Example],
    codes: np.ndarray,
    codebook_sizes: Sequence[int],
    cfg: SFTConfig,
    out_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
    world: World | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the generator; returns a summary (best epoch and metrics, epochs run, seconds).

    ``resume`` continues from ``out_dir/checkpoint`` when present (otherwise starts afresh).
    ``stop_after`` runs at most that many epochs in this call and leaves a resumable checkpoint
    (a time-sliced job; also how the tests interrupt a run without changing its schedule).
    ``world``: under torchrun, every process takes its share of each epoch's batches (DDP
    averages the gradients), every process validates the same (synchronised) weights so all
    take the same early-stopping decision, and only the main process writes files. Exact
    resume is guaranteed for a single process only (each process has its own dropout RNG).
    ``progress`` shows a rich progress bar on stderr (log lines then print above it).
    """
    cfg.validate()
    if not train_examples:
        raise ConfigError("no training examples")
    if not valid_examples:
        raise ConfigError("no validation examples")
    if stop_after is not None and (not _is_int(stop_after) or stop_after < 1):
        raise ConfigError(f"stop_after {stop_after!r} must be an integer >= 1")
    world = world or setup_world(cfg.device)
    say = (log or (lambda _msg: None)) if world.main else (lambda _msg: None)
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(world.device)
    codes = np.asarray(codes, dtype=np.int64)
    vocab = SidVocab(codebook_sizes)
    trie = SidTrie.from_codes(codes, list(codebook_sizes)).to(device)

    input_ids, attention_mask, labels = encode_examples(
        train_examples, codes, vocab, cfg.max_history
    )
    lengths = attention_mask.sum(1)
    valid = _valid_subset(valid_examples, cfg)
    valid_tensors = encode_examples(valid, codes, vocab, cfg.max_history)
    n_train = len(train_examples)
    # length_grouped_batches makes exactly ceil(n / batch) batches; each process takes 1/world
    steps_per_epoch = math.ceil(n_train / cfg.batch_size) // world.size
    if steps_per_epoch < 1:
        raise ConfigError(f"{n_train} training examples make fewer batches than the "
                          f"{world.size} processes; lower --batch-size")
    total_steps = steps_per_epoch * cfg.epochs

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, vocab).to(device)
    if world.distributed:
        torch.manual_seed(cfg.seed + 7919 * world.rank)  # own dropout masks per process
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        ddp = model
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(min(cfg.warmup_steps, total_steps), total_steps)
    )
    shuffle = torch.Generator().manual_seed(cfg.seed)

    ckpt_dir, best_dir, log_path = out_dir / CHECKPOINT, out_dir / BEST, out_dir / LOG
    cfg_dict = cfg.to_dict()
    state = {"format_version": CKPT_FORMAT, "epoch": 0, "best_score": None, "best_epoch": 0,
             "best_metrics": {}, "stale": 0, "stopped": False, "seconds": 0.0,
             "config": cfg_dict}
    if resume and (ckpt_dir / "state.json").is_file():
        try:
            saved_cfg = json.loads((ckpt_dir / "state.json").read_text("utf-8"))["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"unusable checkpoint ({e}); train again without --resume",
                                ckpt_dir) from None
        changed = sorted(k for k in cfg_dict if k not in _RESUMABLE_CHANGES
                         and saved_cfg.get(k) != cfg_dict[k])
        if changed:
            raise ConfigError(f"cannot resume: options {changed} differ from the interrupted "
                              "run; use the same values or train without --resume")
        saved = _load_checkpoint(ckpt_dir, model, optimizer, scheduler, shuffle, device)
        state = {**saved, "config": cfg_dict}
        # epochs/patience may have been raised to extend a run (the LR schedule then follows the
        # new budget, so the result is no longer that of one uninterrupted run)
        state["stopped"] = state["stale"] >= cfg.patience
        rows = _read_log(log_path, state["epoch"])
        say(f"resuming after epoch {state['epoch']} (best NDCG@{EVAL_K} "
            f"{state['best_score']} at epoch {state['best_epoch']})")
    else:
        if world.main:
            for stale_dir in (ckpt_dir, best_dir):
                shutil.rmtree(stale_dir, ignore_errors=True)
        rows = []
    if world.main:
        _write_log(log_path, rows)

    bar = progress_bar(progress and world.main)
    if progress and world.main:
        say = bar.console.print  # log lines above the live bar, not through it
    task = bar.add_task("sft", total=steps_per_epoch * (cfg.epochs - state["epoch"]), info="")
    bar.start()
    run_here = 0
    try:
        while not state["stopped"] and state["epoch"] < cfg.epochs:
            if stop_after is not None and run_here >= stop_after:
                break
            t0 = time.time()
            epoch = state["epoch"] + 1
            model.train()
            loss_sum, seen = 0.0, 0
            batches = length_grouped_batches(lengths, cfg.batch_size, shuffle)
            # every process draws the same batches and takes its own equal share
            batches = batches[world.rank : steps_per_epoch * world.size : world.size]
            for idx in batches:
                width = int(lengths[idx].max())
                out = ddp(
                    input_ids=input_ids[idx, :width].to(device),
                    attention_mask=attention_mask[idx, :width].to(device),
                    labels=labels[idx].to(device),
                )
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                loss_sum += float(out.loss.detach()) * len(idx)
                seen += len(idx)
                bar.advance(task)
            if world.distributed:
                totals = torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(totals)
                loss_sum, seen = float(totals[0]), int(totals[1])
            lr = optimizer.param_groups[0]["lr"]
            metrics = _evaluate(model, vocab, trie, valid, codes, cfg)
            score = metrics[f"ndcg@{EVAL_K}"]
            valid_loss = _valid_loss(model, valid_tensors, cfg.batch_size)
            seconds = time.time() - t0
            row = {"epoch": epoch, "loss": loss_sum / seen, "valid_loss": valid_loss, "lr": lr,
                   f"valid_recall@{EVAL_K}": metrics[f"recall@{EVAL_K}"],
                   f"valid_ndcg@{EVAL_K}": score, "seconds": round(seconds, 3)}
            rows.append(row)
            if world.main:
                _write_log(log_path, rows)
            say(json.dumps(row))
            bar.update(task, info=f"epoch {epoch} loss {row['loss']:.3f} "
                                  f"valid NDCG@{EVAL_K} {score:.4f}")
            if state["best_score"] is None or score > state["best_score"]:
                state.update(best_score=score, best_epoch=epoch, best_metrics=metrics, stale=0)
                if world.main:
                    write_folder_atomically(best_dir,
                                             lambda tmp: save_generator(model, cfg.model, tmp))
            else:
                state["stale"] += 1
            state["epoch"] = epoch
            state["seconds"] += seconds
            if state["stale"] >= cfg.patience:
                state["stopped"] = True
                say(f"early stop: no better NDCG@{EVAL_K} for {cfg.patience} epochs")
            if world.main:
                _save_checkpoint(ckpt_dir, model, optimizer, scheduler, shuffle, device, state)
            barrier(world)
            run_here += 1
    finally:
        bar.stop()

    return {
        "best_epoch": state["best_epoch"],
        "best": {f"valid_{k}": v for k, v in state["best_metrics"].items()},
        "epochs_run": state["epoch"],
        "epochs_this_call": run_here,
        "stopped_early": bool(state["stopped"]) and state["epoch"] < cfg.epochs,
        "finished": bool(state["stopped"]) or state["epoch"] >= cfg.epochs,
        "seconds": round(state["seconds"], 3),
        "wall_seconds": round(time.time() - started, 3),
        "valid_users": len(valid),
        "train_examples": n_train,
    }
