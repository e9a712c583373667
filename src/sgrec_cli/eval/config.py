"""`sgrec eval`'s config: full-ranking metrics of trained models on one split."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import DECODE_HELP, DECODE_MODES, MODEL_HELP, check_model
from ..options import StepConfig, option
from ..validate import check_choice, check_device, check_ints, is_int, require
from .metrics import DEFAULT_KS

SPLITS = ("test", "valid")
EVAL_K_MAX = max(DEFAULT_KS)  # the metrics go to @20


@dataclass
class EvalConfig(StepConfig):
    """Leave-one-out metrics and paired comparisons (docs/design.md §3)."""

    models: tuple[str, ...] = option(factory=lambda: ("sft",), flag="--model",
                                     help=f"{MODEL_HELP}; repeat to compare.")
    split: str = option("test", "test or valid.")
    n_boot: int = option(10_000, "Paired bootstrap resamples.")
    num_beams: int = option(20, f"Generator beams (>= {EVAL_K_MAX}: the metrics go to "
                            f"@{EVAL_K_MAX}).")
    decode: str = option("auto", DECODE_HELP)
    seed: int = option(0, "Random seed of the bootstrap.")
    device: str = option("auto", "auto, cpu or cuda (generator).")

    def __post_init__(self) -> None:
        self.models = tuple(self.models)
        self.validate()

    def validate(self) -> None:
        require(bool(self.models), "--model: give at least one model to evaluate")
        for m in self.models:
            check_model(m)
        require(len(set(self.models)) == len(self.models),
                f"--model lists a model twice: {', '.join(self.models)}")
        check_choice("split", self.split, SPLITS)
        check_ints(self, ("n_boot",), 1)
        check_ints(self, ("seed",), 0)
        require(is_int(self.num_beams) and self.num_beams >= EVAL_K_MAX,
                f"--num-beams {self.num_beams!r} must be an integer >= {EVAL_K_MAX}: the "
                f"metrics go to @{EVAL_K_MAX}")
        check_device(self.device)
        check_choice("decode", self.decode, DECODE_MODES)
