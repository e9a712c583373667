"""`sgrec train --a2po`'s config: RUN/sft + RUN/judge -> RUN/a2po[-TAG]."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import a2po_step
from ..options import StepConfig, option
from ..validate import check_choice, check_device, check_ints, check_num, require
from .advantages import ADVANTAGES, BUSINESS_REWARDS, MODES, RANKER_SHAPES

ROLLOUTS = ("beam", "sample")
RL_EXAMPLES = ("all", "latest", "next")


@dataclass
class A2POConfig(StepConfig):
    """A2PO fine-tuning of the SFT generator (docs/design.md §7)."""

    advantage: str = option("biz", "; ".join(f"{m.name} ({m.help})"
                                              for m in ADVANTAGES.values()) + ".")
    group_size: int = option(16, "Distinct items per group (G).")
    business: str = option("ranker", "Business reward: rank (1 for the next item, a rank-aware "
                           "penalty for the others when it is in the group; docs/design.md "
                           "§7), prefix (SID-prefix credit), value (the rank penalty weighted "
                           "by the items' value field), future (the rank penalty that "
                           "credits the user's later training items) or ranker (each item's "
                           "score under the run's SASRec given the same history; needs `sgrec "
                           "train --model sasrec`).")
    ranker_shape: str = option("distill", "--business ranker: logprob (the ranker's "
                               "log-probability / --ranker-temperature), rank (1 - the item's "
                               "rank in its group under the ranker / (G - 1)), prob (the "
                               "ranker's softmax over the group at --ranker-temperature) or "
                               "distill (that softmax minus the policy's own over the group, "
                               "used unscaled as the advantage: the policy learns the ranker's "
                               "order of the group and stops once it has it).")
    ranker_temperature: float = option(1.0, "--business ranker: temperature of the logprob, "
                                       "prob and distill shapes.")
    ranker_weight: float | None = option(
        None, "--ranker-shape distill: the ranker's share w of the teacher's score, w x its "
        "log-probability + (1 - w) x the SFT generator's (1 = the ranker alone) [default: the "
        "weight `--model sft@ranker` chooses on validation, so the teacher is that fused "
        "model].")
    ranker_candidates: int = option(0, "--ranker-shape distill: add to every group the "
                                    "ranker's N best items for the history that the policy "
                                    "did not propose (history items excluded), so the teacher's "
                                    "favourites are learned too (0 = the policy's items only).")
    hit_weight: float = option(0.0, "--business ranker: weight of the rank reward (1 for the "
                               "next item, ...) added to the ranker's (0 = the ranker alone).")
    rollout: str = option("beam", "beam (the top-G by constrained beam search) or sample (G "
                          "items drawn without replacement at --temperature).")
    temperature: float = option(1.0, "Sampling temperature for --rollout sample.")
    rho: float = option(0.05, "Share of groups given a semantic reward (paper: 0.05).")
    beta: float = option(1e-3, "KL(k3) weight to the SFT reference.")
    clip: float = option(0.2, "PPO clip epsilon.")
    lr: float = option(3e-4, "AdamW learning rate.")
    batch_users: int = option(1024, "Groups per optimisation step.")
    chunk_users: int = option(256, "Groups rolled out and back-propagated at once (memory "
                              "only; the step's gradient is the same).")
    examples: str = option("next", "Draw groups from all training examples (every prefix), "
                           "from each user's latest one, or from each user's next position "
                           "(the training items as history, no label: for the ranker reward, "
                           "which neither model was fitted on there).")
    nll_weight: float = option(0.0, "Weight of an NLL anchor on the examples' next-item SIDs "
                               "(0 = none).")
    positive_only: bool = option(False, "Update only on rollouts with a positive advantage "
                                 "(negative advantages set to 0).")
    sibling: bool = option(False, "--advantage biz: per-token advantages among the rollouts "
                           "that share the token's SID prefix (V-STAR).")
    ppo_epochs: int = option(1, "Updates per rollout batch (> 1 lets the clip act).")
    steps: int = option(64, "Optimisation steps.")
    eval_every: int = option(16, "Steps between validations.")
    valid_users: int = option(0, "Validation users scored at each validation (0 = all).")
    select_alpha: float = option(0.05, "Keep the best validation state only if it beats the "
                                 "SFT start by a paired bootstrap with p below this (1 = keep "
                                 "the best state).")
    tag: str | None = option(None, "Write RUN/a2po-TAG instead of RUN/a2po (e.g. one per "
                             "ablation) [default: no tag, RUN/a2po].")
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "auto, cpu or cuda.")

    @property
    def teacher_weight(self) -> float:
        """The ranker's share of the distill teacher: ``ranker_weight``, 1 (the ranker alone)
        while it is unset (`train --a2po` sets it to `sft@ranker`'s before training)."""
        return 1.0 if self.ranker_weight is None else self.ranker_weight

    @property
    def step(self) -> str:
        """The run folder this config trains into: a2po or a2po-TAG."""
        return a2po_step(self.tag)

    def validate(self) -> None:
        check_choice("advantage", self.advantage, MODES)
        check_choice("examples", self.examples, RL_EXAMPLES)
        check_num("nll_weight", self.nll_weight, of=self, low=0)
        require(self.examples != "next" or (self.business == "ranker" and not self.hit_weight
                                            and not self.nll_weight),
                f"--examples next has no label: use it with --business ranker, without "
                f"--hit-weight and --nll-weight (with --business {self.business}, pass "
                f"--examples all or latest)")
        check_num("select_alpha", self.select_alpha, of=self, low=0, high=1, low_open=True)
        for name in ("positive_only", "sibling"):
            value = getattr(self, name)
            require(isinstance(value, bool), f"{name} {value!r} must be true or false")
        require(not self.sibling or self.advantage == "biz",
                f"--sibling compares business rewards only; use it with --advantage biz, "
                f"not {self.advantage}")
        check_choice("business", self.business, BUSINESS_REWARDS)
        check_choice("ranker_shape", self.ranker_shape, RANKER_SHAPES)
        check_num("ranker_temperature", self.ranker_temperature, of=self, low=0, low_open=True)
        check_num("hit_weight", self.hit_weight, of=self, low=0)
        if self.ranker_weight is not None:
            check_num("ranker_weight", self.ranker_weight, of=self, low=0, high=1,
                      low_open=True)
        check_ints(self, ("ranker_candidates",), 0)
        require(not self.ranker_candidates or (self.business == "ranker"
                                               and self.ranker_shape == "distill"),
                "--ranker-candidates adds the teacher's items to the groups of --business "
                "ranker --ranker-shape distill (a cross-entropy over the group, which may hold "
                "items the policy did not draw); other rewards are policy gradients")
        require(self.ranker_weight in (None, 1) or (self.business == "ranker"
                                            and self.ranker_shape == "distill"),
                "--ranker-weight mixes the teacher of --business ranker --ranker-shape "
                "distill; other rewards have no teacher")
        require(not self.hit_weight or self.business == "ranker",
                f"--hit-weight mixes the hit reward into --business ranker's; with --business "
                f"{self.business} it has nothing to mix with")
        check_choice("rollout", self.rollout, ROLLOUTS)
        check_num("temperature", self.temperature, of=self, low=0, low_open=True)
        check_device(self.device)
        check_ints(self, ("group_size", "batch_users", "chunk_users", "ppo_epochs", "steps",
                          "eval_every"), 1)
        require(self.group_size >= 2, f"--group-size {self.group_size} must be >= 2: "
                                      "advantages compare the items of a group")
        check_ints(self, ("valid_users", "seed"), 0)
        check_num("rho", self.rho, of=self, low=0, high=1, hint=" (paper: 0.05)")
        check_num("beta", self.beta, of=self, low=0)
        check_num("clip", self.clip, of=self, low=0, high=1, low_open=True, high_open=True)
        check_num("lr", self.lr, of=self, low=0, low_open=True)
        a2po_step(self.tag)
