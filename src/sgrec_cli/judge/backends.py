"""The registry of Stage A backends: a new backend is one entry here (a factory, whether it
answers prompts, its option check, and whether A2PO can score rollouts with it live);
`sgrec judge --backend`, the config's validation, the judge step and the judge's reward for
A2PO (store.py) all read it.

* ``embedding`` scores every pair with formulas over the item embeddings, all at once.
* ``trained`` fine-tunes a sentence-transformer on the fit users' feedback first (the judge
  step does: ``trains``), then scores pairs by formulas over the tuned embeddings.
* ``llm`` and ``openai`` answer one prompt per (pair, aspect): their answers are cached and
  their prompts sent in chunks (``chunk_prompts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..validate import require


@dataclass(frozen=True)
class BackendSpec:
    name: str
    help: str
    # (JudgeConfig, item embeddings, device) -> backend; None: built by training (``trains``)
    make: Callable[[Any, Any, str], Any] | None
    prompts: bool  # answers prompts (cached, chunked) rather than scoring pairs by formula
    trains: bool = False  # learned by the judge step from the run's data (judge/trained.py)
    chunk_prompts: Callable[[Any], int] = lambda cfg: 1
    check: Callable[[Any], None] = lambda cfg: None  # backend-specific option checks
    # (RUN/judge folder, the run, the judge's config) -> (a scorer with ``score(history,
    # candidates)`` -> ((G, A) aspect scores, ...), the (user, position) examples it was trained
    # on or None): how A2PO recomputes this backend's aspects for any rollout. None: A2PO looks
    # its rewards up in the judged pairs (a backend that answers prompts cannot run per rollout)
    live: Callable[[Any, Any, dict], tuple[Any, set | None]] | None = None


def _embedding(cfg, emb, device):
    from .embedding import EmbeddingBackend

    return EmbeddingBackend(emb)


def _llm(cfg, emb, device):
    from .llm import LLMBackend

    return LLMBackend(cfg.llm, device=device, batch_size=cfg.llm_batch_size,
                      min_mass=cfg.min_mass, answer_prefix=cfg.answer_prefix)


def _openai(cfg, emb, device):
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(cfg.api_base, cfg.api_model, concurrency=cfg.concurrency,
                         timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                         min_mass=cfg.min_mass)


def _live_embedding(folder, run, config: dict):
    from .embedding import EmbeddingBackend

    return EmbeddingBackend(run.sids.embeddings()), None


def _live_trained(folder, run, config: dict):
    import numpy as np

    from .trained import TRAIN_EXAMPLES, load_trained

    titles = [str(it.get("title") or it.get("id")) for it in run.data.items()]
    # on the CPU: one short query text per judged group
    scorer = load_trained(folder, titles, int(config["query_history"]), "cpu")
    return scorer, {(int(u), int(p)) for u, p in np.load(folder / TRAIN_EXAMPLES)}


def _check_openai(cfg) -> None:
    require(bool(cfg.api_base and cfg.api_model),
            "--backend openai needs --api-base URL (e.g. http://host:8000/v1) and "
            "--api-model NAME")


BACKENDS = {b.name: b for b in (
    BackendSpec("embedding", "formulas over the item embeddings", _embedding, prompts=False,
                live=_live_embedding),
    BackendSpec("trained", "a sentence-transformer fine-tuned on the fit users' feedback",
                None, prompts=False, trains=True, live=_live_trained),
    # a local model answers one prompt at a time (its batching is inside the backend)
    BackendSpec("llm", "a local transformers causal LM", _llm, prompts=True),
    BackendSpec("openai", "an OpenAI-compatible server (vLLM, SGLang, TGI)", _openai,
                prompts=True, chunk_prompts=lambda cfg: 32 * cfg.concurrency,
                check=_check_openai),
)}


def make_backend(cfg, emb, device: str):
    """The backend ``cfg.backend`` names (validated by JudgeConfig), when it needs no
    training."""
    spec = BACKENDS[cfg.backend]
    if spec.make is None:
        raise ValueError(f"the {spec.name} backend is trained by the judge step")
    return spec.make(cfg, emb, device)
