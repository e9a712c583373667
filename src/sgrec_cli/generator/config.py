"""The generator's configs: its architecture (``GeneratorConfig``, saved beside the weights) and
`sgrec train`'s SFT budget (``SFTConfig``), which holds one."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..names import SCORINGS
from ..options import StepConfig, nested, option
from ..validate import check_device, check_ints, check_num, is_int, is_num, require

INPUT_MODES = ("tokens", "items")
OBJECTIVES = ("sequence", "prefix")
# rows per step: as many optimizer steps per epoch either way (a Scientific user has about 4
# training examples), the sequence batch chosen on Scientific (docs/results.md)
PREFIX_BATCH, SEQUENCE_BATCH = 256, 64
# learning-rate warm-up when none is given: this share of the training steps, at most the cap
WARMUP_SHARE, WARMUP_CAP = 0.1, 200
SFT_EVAL_K = 10  # validation reports Recall/NDCG@10 from the beams
HYBRID_WEIGHT = 0.5  # the hybrid weight epochs are compared at when none is given


@dataclass(frozen=True)
class GeneratorConfig:
    """The SID generator's architecture (a T5 encoder-decoder, ``num_layers`` layers each); the
    vocabulary comes from the SIDs (docs/design.md §5)."""

    d_model: int = option(128, "Model width.")
    num_layers: int = option(2, "Encoder layers (and as many decoder layers).")
    num_heads: int = option(4, "Attention heads.")
    d_ff: int | None = option(None, "Feed-forward width [default: 4 x d-model].")
    dropout: float = option(0.1, "Dropout.")
    relative_attention_num_buckets: int = option(32, "T5 relative-position buckets.")
    relative_attention_max_distance: int = option(128, "T5 relative-position distance cap.")
    input: str = option("items", "items (one encoder position per history item: its pooled "
                        "SID embedding) or tokens (one per SID token, TIGER).")
    text: bool = option(False, "--input items: add the item's frozen text embedding "
                        "(RUN/sids), projected to d-model, to its input vector.")
    recency: bool = option(False, "--input items: add a learned embedding of each history "
                           "item's distance from the most recent one (zero at the start).")
    ids: bool = option(False, "--input items or --score hybrid: add a learned free embedding "
                       "per item (zero at the start) to its pooled vector.", flag="--item-ids")
    causal: bool | None = option(None, "--input items: the encoder's position t attends only "
                                 "to history items up to t [default: on with --objective "
                                 "sequence, which needs it; off with --objective prefix].")
    score: str = option("generator", "generator (rank by SID log-probability) or hybrid (also "
                        "learn a dense item head; rank beams and its top items by the mixed "
                        "score).")
    # set from SFTConfig.hybrid_weight, or chosen on validation once training ends
    hybrid_weight: float = HYBRID_WEIGHT

    def __post_init__(self) -> None:
        if self.d_ff is None and is_int(self.d_model):
            object.__setattr__(self, "d_ff", 4 * self.d_model)

    def validate(self) -> None:
        require(self.input in INPUT_MODES,
                f"model input {self.input!r} is not known; use one of {', '.join(INPUT_MODES)}")
        require(self.score in SCORINGS,
                f"model score {self.score!r} is not known; use one of {', '.join(SCORINGS)}")
        for name in ("text", "ids", "recency", "causal"):
            value = getattr(self, name)
            require(isinstance(value, bool) or (name == "causal" and value is None),
                    f"model {name} {value!r} must be true or false")
        require(not self.text or self.input == "items",
                "text features need item inputs (--input items)")
        require(not self.recency or self.input == "items",
                "recency embeddings need item inputs (--input items)")
        require(not self.causal or self.input == "items",
                "a causal encoder needs item inputs (--input items)")
        require(not self.ids or self.input == "items" or self.score == "hybrid",
                "item id embeddings need item inputs (--input items) or --score hybrid")
        require(is_num(self.hybrid_weight) and 0 <= self.hybrid_weight <= 1,
                f"model hybrid_weight {self.hybrid_weight!r} must be in [0, 1]")
        for name in ("d_model", "num_layers", "num_heads", "d_ff",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1,
                    f"model {name} {value!r} must be an integer >= 1")
        require(self.d_model % self.num_heads == 0,
                f"model d_model {self.d_model!r} must be divisible by num_heads "
                f"{self.num_heads!r}")
        require(is_num(self.dropout) and 0 <= self.dropout < 1,
                f"model dropout {self.dropout!r} must be in [0, 1)")


def generator_config(given: dict[str, Any]) -> GeneratorConfig:
    """A GeneratorConfig from a dict, unknown keys refused."""
    known = {f.name for f in fields(GeneratorConfig)}
    unknown = sorted(set(given) - known)
    require(not unknown, f"unknown model options {unknown}; known: {sorted(known)}")
    return GeneratorConfig(**given)


@dataclass
class SFTConfig(StepConfig):
    """`sgrec train`: RUN/data + RUN/sids -> RUN/sft, the SID generator trained by next-SID
    prediction. The encoder reads the most recent items of each history up to RUN/data's max
    history."""

    objective: str | None = option(
        None, "sequence (one causal pass per user trains every next-item target of its "
        "history) or prefix (every history prefix is its own example, encoded from scratch) "
        "[default: sequence with --input items, prefix with --input tokens].")
    item_weight: float = option(0.0, "Weight of the item-level loss: -log of the target's "
                                "probability among catalogue items, each SID level normalised "
                                "over the trie's valid children (0 = token loss only).")
    first_level_weight: float = option(1.0, "Weight of the first SID level in the loss, the "
                                       "other levels 1 (weights rescaled to mean 1).")
    hard_negatives: int = option(0, "Hard negatives at the first SID level: the target's "
                                 "code is also contrasted with the N wrong codes the model "
                                 "ranks highest (0 = off).")
    epochs: int = option(50, "Epoch budget (early stopping on validation NDCG@10; the "
                         "generator's learning rate decays linearly to 0 at its end).")
    batch_size: int | None = option(
        None, "Training rows per optimizer step (the generator's: 64 user windows with "
        "--objective sequence, each holding all of a user's examples; 256 examples with "
        "--objective prefix).")
    lr: float = option(1e-3, "Learning rate (the generator's: its peak, reached after "
                       "--warmup-steps).")
    weight_decay: float = option(0.01, "AdamW decoupled weight decay.")
    warmup_steps: int | None = option(
        None, f"Learning-rate warm-up steps [default: {WARMUP_SHARE:.0%} of the training "
        f"steps, at most {WARMUP_CAP}].")
    num_beams: int = option(20, f"Beams of the validation search (>= {SFT_EVAL_K}).")
    valid_users: int = option(0, "Validation users scored after each epoch (0 = all; N: a "
                              "seeded subset), their history items excluded as in `sgrec "
                              "eval`.")
    patience: int = option(5, "Epochs without a better validation NDCG@10 before stopping.")
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "auto, cpu or cuda.")
    model: GeneratorConfig = nested(GeneratorConfig, "The generator architecture.")
    hybrid_weight: float | None = option(
        None, "--score hybrid: the dense head's share of the score [default: chosen from 0, "
        f"0.1, ..., 1 on the validation users once training ends; epochs are compared at "
        f"{HYBRID_WEIGHT}].")

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = generator_config(self.model)
        if self.hybrid_weight is not None and isinstance(self.model, GeneratorConfig):
            self.model = replace(self.model, hybrid_weight=self.hybrid_weight)
        if self.objective is None and isinstance(self.model, GeneratorConfig):
            self.objective = "sequence" if self.model.input == "items" else "prefix"
        if isinstance(self.model, GeneratorConfig) and self.model.causal is None:
            self.model = replace(self.model, causal=self.objective == "sequence")
        if self.batch_size is None:
            self.batch_size = SEQUENCE_BATCH if self.objective == "sequence" else PREFIX_BATCH
        self.validate()

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps of a run of ``total_steps`` optimizer steps: --warmup-steps (at most
        the run), or WARMUP_SHARE of the run capped at WARMUP_CAP."""
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        return min(WARMUP_CAP, int(total_steps * WARMUP_SHARE))

    @property
    def tune_hybrid_weight(self) -> bool:
        """A hybrid model's weight is chosen on validation once training ends unless given."""
        return self.hybrid_weight is None

    def validate(self) -> None:
        check_ints(self, ("epochs", "batch_size", "num_beams", "patience"), 1)
        require(self.num_beams >= SFT_EVAL_K,
                f"--num-beams {self.num_beams!r} must be >= {SFT_EVAL_K}: validation reports "
                f"Recall@{SFT_EVAL_K} from the beams")
        check_ints(self, ("valid_users", "seed", "hard_negatives"), 0)
        if self.warmup_steps is not None:
            check_ints(self, ("warmup_steps",), 0)
        check_num("lr", self.lr, of=self, low=0, low_open=True)
        check_num("weight_decay", self.weight_decay, of=self, low=0)
        check_device(self.device)
        require(self.objective in OBJECTIVES, f"objective {self.objective!r} is not known; "
                f"use one of {', '.join(OBJECTIVES)}")
        check_num("item_weight", self.item_weight, of=self, low=0)
        check_num("first_level_weight", self.first_level_weight, of=self, low=0, low_open=True)
        if self.hybrid_weight is not None:
            check_num("hybrid_weight", self.hybrid_weight, low=0, high=1)
        require(isinstance(self.model, GeneratorConfig),
                f"model {self.model!r} must be a GeneratorConfig")
        require(self.objective != "sequence" or self.model.input == "items",
                "--objective sequence needs item inputs (--input items); use --objective "
                "prefix with --input tokens")
        require(self.objective != "sequence" or self.model.causal is not False,
                "--objective sequence needs a causal encoder; drop --no-causal or use "
                "--objective prefix")
        self.model.validate()
