"""Stage A prompts and the reading of answers, shared by the `llm` and `openai` backends.

A prompt asks one question (one aspect) about one candidate for one user context and wants a
single digit on a fixed 1..5 scale. Answers are read in one of two ways:

* from next-token probabilities (``read_scale``): the probability mass on the tokens "1".."5";
  the score is the expected rating mapped to [0, 1]. When that mass is below ``min_mass`` the
  model was not answering the question, and the answer is *unreadable* (recorded as missing);
* from text (``parse_answer``): a lone digit, "4/5", "Rating: 4" or JSON ``{"score": 4}``.
  Anything else is unreadable.

An unreadable answer is never turned into a score.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SCALE = ("1", "2", "3", "4", "5")
PROMPT_VERSION = 1  # bump when the wording changes: it is part of every cache key

SYSTEM = ("You are a careful shopping analyst. You judge whether a candidate product suits a "
          "customer, from the products the customer bought before.")

# aspect name -> the question asked about the candidate (docs/design.md §6)
QUESTIONS: dict[str, str] = {
    "profile": "How well does the candidate fit the customer's long-term interests, as shown "
               "by all of the purchases above?",
    "future": "The purchases are listed oldest first. How well does the candidate fit where "
              "the customer's most recent purchases are heading next?",
    "novelty": "Does the candidate bring something new to the customer, rather than being a "
               "near-duplicate of something already bought?",
}
ANSWER_RULE = "Answer with a single digit from 1 (not at all) to 5 (completely)."

# Outcome statuses
OK, UNREADABLE, FAILED = "ok", "unreadable", "failed"


@dataclass(frozen=True)
class Prompt:
    """One question: ``prefix`` (shared by all candidates of a user) + ``suffix`` = the user
    message. ``key`` identifies it in the cache (it hashes the model, the wording and the texts).
    """

    key: str
    prefix: str
    suffix: str
    aspect: str

    @property
    def user_message(self) -> str:
        return self.prefix + self.suffix

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": self.user_message}]


@dataclass(frozen=True)
class Outcome:
    """What a backend made of one prompt. ``score`` is None unless ``status == OK``."""

    status: str
    score: float | None = None
    probs: tuple[float, ...] | None = None  # P("1".."5") renormalised, when read from logits
    detail: str = ""  # the raw answer or the error, for the record
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        row = {"status": self.status, "score": self.score}
        if self.probs is not None:
            row["probs"] = [round(p, 5) for p in self.probs]
        if self.detail:
            row["detail"] = self.detail[:200]
        return row

    @staticmethod
    def from_json(row: Mapping) -> Outcome:
        probs = row.get("probs")
        return Outcome(row["status"], row.get("score"),
                       tuple(probs) if probs is not None else None, row.get("detail", ""))


def history_block(titles: Sequence[str], max_chars: int = 120) -> str:
    lines = [f"{i}. {_clip(t, max_chars)}" for i, t in enumerate(titles, 1)]
    return "Products the customer bought, oldest first:\n" + "\n".join(lines) + "\n\n"


def candidate_block(title: str, aspect: str, max_chars: int = 200) -> str:
    question = QUESTIONS[aspect]
    return f"Candidate product: {_clip(title, max_chars)}\n\n{question}\n{ANSWER_RULE}"


def make_prompt(model: str, history_titles: Sequence[str], candidate_title: str,
                aspect: str) -> Prompt:
    prefix = history_block(history_titles)
    suffix = candidate_block(candidate_title, aspect)
    key = prompt_key(model, prefix, suffix)
    return Prompt(key, prefix, suffix, aspect)


def prompt_key(model: str, prefix: str, suffix: str) -> str:
    h = hashlib.sha256()
    for part in (f"v{PROMPT_VERSION}", model, SYSTEM, prefix, suffix):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def expected_score(probs: Sequence[float]) -> float:
    """Expected rating on 1..5 mapped to [0, 1]: sum_k p_k (k - 1) / 4 for renormalised p."""
    total = float(sum(probs))
    return sum(p * k for k, p in enumerate(probs)) / (total * (len(probs) - 1))


def read_scale(scale_probs: Sequence[float], min_mass: float) -> Outcome:
    """Outcome from the (unnormalised) probabilities of the tokens "1".."5" at the answer
    position. Their total mass must reach ``min_mass``; otherwise the answer is unreadable."""
    if len(scale_probs) != len(SCALE):
        raise ValueError(f"expected {len(SCALE)} probabilities, got {len(scale_probs)}")
    mass = float(sum(scale_probs))
    if not mass > 0 or mass < min_mass:
        return Outcome(UNREADABLE, detail=f"scale mass {mass:.3f} < {min_mass}")
    probs = tuple(float(p) / mass for p in scale_probs)
    return Outcome(OK, expected_score(probs), probs, detail=f"scale mass {mass:.3f}")


_LONE = re.compile(r"^\s*(?:rating|score|answer)?\s*[:=]?\s*\**([1-5])\**\s*(?:/\s*5)?\s*\.?\s*$",
                   re.IGNORECASE)


def parse_answer(text: str | None) -> Outcome:
    """Outcome from a text answer: a lone digit 1..5 (optionally "Rating: 4", "4/5", "4.") or a
    JSON object with an integer "score" / "rating" in 1..5. Anything else is unreadable."""
    if text is None:
        return Outcome(UNREADABLE, detail="empty answer")
    raw = text.strip()
    m = _LONE.match(raw)
    if m:
        k = int(m.group(1))
        return Outcome(OK, (k - 1) / 4, detail=raw)
    if raw.startswith("{"):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            return Outcome(UNREADABLE, detail=raw)
        if isinstance(obj, dict):
            value = obj.get("score", obj.get("rating"))
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
                return Outcome(OK, (value - 1) / 4, detail=raw)
    return Outcome(UNREADABLE, detail=raw)


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
