"""The `trained` backend: Stage A learned from the fit users' own pairwise feedback.

A sentence-transformer (default: the packaged all-MiniLM-L6-v2) is fine-tuned with the
sentence-transformers training API on (query, positive, hard negatives) rows:

* query: the user's recent purchase titles, newest first (``query_text``; ``query_history``
  of them, 5 by default, in at most 128 tokens);
* positive: the title and brand of the item the user chose next (``doc_text``);
* hard negatives: items the SFT generator's beams proposed for that history instead;
* in-batch negatives: the other rows' items (MultipleNegativesRankingLoss, no duplicate texts in
  a batch).

Which examples (``judge_training_examples``). Only *fit* users (never the judge's held-out
users) and, of each, only training examples **before** the latest one: the latest training
example is the judge context (its pairs are scored and its held-out AUC reported) and the
example that A2PO's ``--examples latest`` trains on, so the semantic reward A2PO reads there
never restates a target the judge was trained on. Validation and test targets are never read:
the examples come from the training split only. The (user, position) of every example trained
on is written to RUN/judge/train_examples.npy, and A2PO withholds the semantic reward from those
examples (rl/step.py).

The aspects are formulas over the tuned embeddings (unit vectors; e' the tuned item
embeddings, q the tuned query embedding of the user's recent purchases):

* profile(x, a) = (1 + cos(c', p')) / 2, p' the mean of the history's e';
* future(x, a) = (1 + cos(c', q)) / 2: the learned "what this user picks next";
* novelty(x, a) = (1 - max_j cos(c', e'_j)) / 2.

Everything lies in [0, 1]; the aggregator (Stage B) weighs them as for the other backends.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..progress import hf_bars_off
from ..sids.embed import item_text, load_model, resolve_embedder
from .embedding import aspect_scores

DOC_TEMPLATE = "{title}. Brand: {brand}."
DOC_CHARS = 160
MAX_TOKENS = 128  # the tuned model's max_seq_length: a query of 5 titles fits; CPU cost is
# linear in it (a MiniLM step on 2 cores is seconds, not milliseconds)
MODEL_DIR = "model"  # RUN/judge/model: the tuned sentence-transformer (safetensors)
ITEM_EMB = "item_embeddings.npy"  # RUN/judge: the tuned item embeddings (N, D), unit rows
TRAIN_EXAMPLES = "train_examples.npy"  # RUN/judge: (E, 2) user, position of trained examples


def query_text(titles: Sequence[str], history: Sequence[int], n: int) -> str:
    """The user's ``n`` most recent purchases, newest first (truncation drops the oldest)."""
    recent = [" ".join(str(titles[i]).split()) for i in reversed(list(history)[-n:])]
    return "Recent purchases, newest first: " + "; ".join(recent)


def doc_text(item: dict) -> str:
    return item_text(item, DOC_TEMPLATE, max_chars=DOC_CHARS)


@dataclass(frozen=True)
class TrainExample:
    user: int
    position: int  # index among the user's training examples (0 = the first)
    history: tuple[int, ...]
    target: int


def judge_training_examples(train: Sequence, users: set[int],
                            positions: int) -> list[TrainExample]:
    """Each listed user's last ``positions`` training examples *before* their latest one, in
    ``train`` order (``train``: the training split, each user's examples in time order)."""
    per_user: dict[int, list[int]] = {}
    for i, e in enumerate(train):
        if e.user in users:
            per_user.setdefault(e.user, []).append(i)
    out = []
    for u in sorted(per_user):
        idx = per_user[u][:-1]  # never the latest
        start = max(0, len(idx) - positions)
        for pos in range(start, len(idx)):
            e = train[idx[pos]]
            out.append(TrainExample(u, pos, tuple(e.history), int(e.target)))
    return out


def hit_examples(examples: Sequence[TrainExample], beams: Sequence[Sequence[int]]
                 ) -> tuple[list[TrainExample], list[Sequence[int]]]:
    """The examples (and their beams) whose beams hold the next item (``--train-on hits``)."""
    kept = [(e, b) for e, b in zip(examples, beams, strict=True)
            if e.target in {int(i) for i in b}]
    return [e for e, _ in kept], [b for _, b in kept]


def training_rows(examples: Sequence[TrainExample], beams: Sequence[Sequence[int]], *,
                  titles: Sequence[str], docs: Sequence[str], negatives: int, query_history: int,
                  seed: int) -> dict[str, list[str]]:
    """The trainer's columns: anchor (query), positive, negative_1..negative_n. The negatives
    of a row are drawn with ``seed`` from its beams without the target or history items; rows
    with fewer than ``negatives`` such items are dropped."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[str]] = {"anchor": [], "positive": []}
    cols.update({f"negative_{j + 1}": [] for j in range(negatives)})
    for ex, cands in zip(examples, beams, strict=True):
        seen = set(ex.history) | {ex.target}
        pool = [int(i) for i in cands if int(i) >= 0 and int(i) not in seen]
        if len(pool) < negatives:
            continue
        picked = rng.choice(len(pool), size=negatives, replace=False)
        cols["anchor"].append(query_text(titles, ex.history, query_history))
        cols["positive"].append(docs[ex.target])
        for j, p in enumerate(sorted(picked)):
            cols[f"negative_{j + 1}"].append(docs[pool[p]])
    return cols


@dataclass(frozen=True)
class TuneSpec:
    base: str  # sentence-transformers model id or folder
    epochs: int
    batch_size: int
    lr: float
    seed: int


def fine_tune(spec: TuneSpec, rows: dict[str, list[str]], device: str, *,
              log=None) -> tuple[object, dict]:
    """(the tuned SentenceTransformer, a training report) from the trainer's columns;
    ``log`` receives a line about every tenth of the steps (stdout stays clean)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    try:  # sentence-transformers >= 6 (the older paths still work there, deprecated)
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
        from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss
        from sentence_transformers.training_args import BatchSamplers
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if log and logs and "loss" in logs:
                log(f"judge training: step {state.global_step}/{state.max_steps}, "
                    f"loss {float(logs['loss']):.3f}")

    with hf_bars_off():
        model = load_model(spec.base, resolve_embedder(spec.base), device)
    model.max_seq_length = min(model.max_seq_length or MAX_TOKENS, MAX_TOKENS)
    n = len(rows["anchor"])
    steps = -(-n // spec.batch_size) * spec.epochs
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sgrec-judge-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=spec.epochs,
            per_device_train_batch_size=spec.batch_size, learning_rate=spec.lr,
            warmup_steps=max(1, steps // 10), seed=spec.seed, data_seed=spec.seed,
            save_strategy="no", report_to="none", logging_steps=max(1, steps // 10),
            disable_tqdm=True, batch_sampler=BatchSamplers.NO_DUPLICATES,
            use_cpu=not str(device).startswith("cuda"), dataloader_num_workers=0)
        trainer = SentenceTransformerTrainer(model=model, args=args,
                                             train_dataset=Dataset.from_dict(rows),
                                             loss=MultipleNegativesRankingLoss(model))
        for cb in (PrinterCallback, ProgressCallback):  # both print to stdout
            trainer.remove_callback(cb)
        trainer.add_callback(Report())
        out = trainer.train()
        losses = [round(float(r["loss"]), 4) for r in trainer.state.log_history if "loss" in r]
    model.eval()
    report = {"rows": n, "steps": int(out.global_step), "train_loss": round(out.training_loss, 4),
              "loss_curve": losses, "seconds": round(time.perf_counter() - started, 2)}
    return model, report


def encode(model, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """Unit embeddings (n, D) float32."""
    v = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                     normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(v, dtype=np.float32)


class TrainedBackend:
    """Stage A from a tuned sentence-transformer: ``score`` like the embedding backend's."""

    name = "trained"

    def __init__(self, model, item_emb: np.ndarray, titles: Sequence[str], query_history: int):
        self.model, self.emb = model, np.asarray(item_emb, dtype=np.float32)
        self.titles, self.query_history = list(titles), query_history

    def queries(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Tuned query embeddings (U, D) of the users' recent purchases."""
        return encode(self.model, [query_text(self.titles, h, self.query_history)
                                   for h in histories])

    def score(self, history: Sequence[int], candidates: Sequence[int],
              query: np.ndarray | None = None):
        """(scores (C, 3) profile / future / novelty, nearest history position (C,), its
        cosine (C,)), all over the tuned embeddings."""
        q = self.queries([history])[0] if query is None else query
        scores, nearest, near_cos = aspect_scores(self.emb, history, candidates)
        cand = self.emb[np.asarray(candidates, dtype=np.int64)]
        scores[:, 1] = np.clip((1 + cand @ q) / 2, 0.0, 1.0)
        return scores, nearest, near_cos

    def save(self, folder: Path, meta: dict) -> None:
        """The tuned model (safetensors), its item embeddings and how it was built."""
        with hf_bars_off():
            self.model.save(str(folder / MODEL_DIR), safe_serialization=True)
        np.save(folder / ITEM_EMB, self.emb)
        (folder / MODEL_DIR / "sgrec_judge.json").write_text(
            json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def load_trained(folder: Path, titles: Sequence[str], query_history: int,
                 device: str) -> TrainedBackend:
    """The tuned judge of RUN/judge; a folder without one (or for another catalogue) is
    refused with one line."""
    model_dir, emb_file = folder / MODEL_DIR, folder / ITEM_EMB
    if not (model_dir / "model.safetensors").is_file() or not emb_file.is_file():
        raise ArtifactError("holds no tuned judge model (model/model.safetensors and "
                            f"{ITEM_EMB}); re-run `sgrec judge --backend trained`", folder)
    emb = np.load(emb_file)
    if emb.shape[0] != len(titles):
        raise ArtifactError(f"the tuned judge embeds {emb.shape[0]:,} items and this run has "
                            f"{len(titles):,}: it was built for another catalogue", folder)
    with hf_bars_off():
        model = load_model(str(model_dir), str(model_dir), device)
    model.eval()
    return TrainedBackend(model, emb, titles, query_history)
