"""The `sgrec` command line: parse options, call the library, print. No logic lives here; each
step's options are generated from its config class (cliopts.py), so an option is declared once,
in its config."""

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

from . import __version__
from . import render as show
from .cliopts import Mode, Param, Resolved, Spec, config_toml, make_command
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
)
from .errors import ConfigError, SgrecError
from .progress import emit
from .report import ReportConfig

app = typer.Typer(
    name="sgrec",
    help="Semantic-ID generative recommendation (S-GRec): prepare -> build-sids -> train (the "
    "generator, then --model sasrec) -> judge -> train --a2po -> eval -> recommend / serve. "
    "Every step reads and writes one run directory (--run, or $SGREC_RUN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: "[default: ...]" and "[a]" are not markup
    context_settings={"max_content_width": 100},
)
out = Console()
_state = {"debug": False}

RUN = Param("run", Annotated[Path, typer.Option(
    "--run", "-r", envvar="SGREC_RUN", show_envvar=True,
    help="Run directory of this experiment (created by prepare).")], required=True)
JSON = Param("as_json", Annotated[bool, typer.Option(
    "--json", help="Print machine-readable JSON on stdout.")], default=False)
PROGRESS = Param("progress", Annotated[bool, typer.Option(
    help="Show progress on stderr (a bar, or a line every 30 s when redirected).")],
    default=True)


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
            emit(f"[bold red]error:[/] {escape(str(e))}", markup=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            emit("interrupted; nothing half-written was kept")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence for a clean CLI
            if _state["debug"]:
                traceback.print_exc()
            emit(f"[bold red]error:[/] unexpected {type(e).__name__}: {escape(str(e))} "
                 "(re-run with --debug for the traceback)", markup=True)
            raise typer.Exit(1) from None

    return wrapper


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _rows(line: str) -> None:
    """A training row on stderr, from the main process only (torchrun: rank 0 reports)."""
    from .distributed import main_process

    if main_process():
        emit(line)


def _command(spec: Spec, name: str, short: str, text: str):
    """Register ``spec``'s command; the decorated function gets the resolved call."""

    def decorate(fn):
        make_command(app, spec, fn, name=name, help=text, short_help=short, guard=handle_errors)
        return fn

    return decorate


def _single(command: str, config: type, *params: Param) -> Spec:
    return Spec(command, {command: Mode(command, command, config)}, list(params))


# ------------------------------------------------------------------------------- prepare

PREPARE = _single("prepare", PrepareConfig, Param("source", Annotated[Path | None, typer.Argument(
    help="Raw dataset folder or file (or source = \"...\" in --config).", metavar="SOURCE",
    show_default=False)], into="source"), RUN, Param("force", Annotated[bool, typer.Option(
        "--force", help="Replace a data/ folder that holds another dataset or other "
        "settings.")], default=False), JSON)


@_command(PREPARE, "prepare", "Raw dataset -> RUN/data (leave-one-out split).", """Convert a raw
dataset into RUN/data with the leave-one-out split and a stats file.

Example: sgrec prepare ../shared/data/amazon_scientific_2018 --run runs/sci""")
def prepare(call: Resolved) -> None:
    from .data.step import run_step

    p = call.params
    res = run_step(p["run"], call.config, force=p["force"])
    for line in res.warnings:
        emit(f"[yellow]warning:[/] {escape(line)}", markup=True)
    if p["as_json"]:
        _print_json({"folder": str(res.folder), "dataset": res.manifest["dataset"],
                     "unchanged": res.unchanged, "stats": res.stats, "warnings": res.warnings})
        return
    out.print(show.key_value_table(f"{res.manifest['dataset']['name']} -> {res.folder}",
                                   show.key_stats("data", res.stats)))
    if res.unchanged:
        out.print(f"{res.folder} left as it was: it already holds this dataset with these "
                  "settings", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------- build-sids


SIDS = _single("build-sids", BuildSidsConfig, RUN, PROGRESS, JSON)


@_command(SIDS, "build-sids",
          "RUN/data -> RUN/sids (item embeddings, semantic IDs).", """Embed item text,
quantise with RQ-VAE or residual k-means, and write unique semantic IDs into RUN/sids.

Example: sgrec build-sids --run runs/sci --method rqvae --dedup reassign""")
def build_sids(call: Resolved) -> None:
    from .sids.step import run_step

    p = call.params
    stats = run_step(p["run"], call.config, progress=p["progress"], log=emit)
    if p["as_json"]:
        _print_json(stats)
        return
    out.print(show.key_value_table(f"semantic IDs -> {p['run'] / 'sids'}",
                                   show.key_stats("sids", stats)))


# --------------------------------------------------------------------------------- train


def _train_mode(params: dict[str, Any]) -> str:
    model = params.get("model") or "generator"
    if model not in ("generator", "sasrec"):
        raise ConfigError(f"--model {model!r} is not known; use generator or sasrec")
    if params.get("a2po"):
        if model != "generator":
            raise ConfigError("--a2po fine-tunes the generator; it does not go with --model "
                              f"{model}")
        return "a2po"
    return model


TRAIN = Spec("train", {
    "generator": Mode("generator", "train", SFTConfig),
    "sasrec": Mode("sasrec", "train --model sasrec", SASRecConfig),
    "a2po": Mode("a2po", "train --a2po", A2POConfig),
}, [RUN,
    Param("model", Annotated[str | None, typer.Option(
        help="generator (SFT on SIDs) or sasrec (the baseline) [default: generator].",
        show_default=False)], key=True),
    Param("a2po", Annotated[bool, typer.Option(
        "--a2po", help="Fine-tune RUN/sft with RL: by default RUN/sasrec (fused with RUN/sft) "
        "teaches the generator its order of the generator's own candidates; --advantage a2po "
        "adds the judge's semantic reward (RUN/judge).")],
        default=False, key=True),
    Param("resume", Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run from its checkpoint.")], default=False,
        modes=("generator", "a2po")),
    PROGRESS, JSON], _train_mode, lambda mode: {"a2po": True} if mode == "a2po" else
    {"model": mode})


@_command(TRAIN, "train", "Train the generator (RUN/sft), SASRec, or A2PO.", """Train the SID
generator by next-SID prediction (RUN/sft) or the SASRec baseline (--model sasrec, RUN/sasrec),
or fine-tune the generator with A2PO (--a2po, RUN/a2po; by default with the run's SASRec as the
teacher, so train it first). An option of another mode than the one chosen is refused.

Example: sgrec train --run runs/sci --epochs 50

Example: sgrec train --run runs/sci --model sasrec

Example: sgrec train --run runs/sci --a2po  (after train --model sasrec)

Example: sgrec train --run runs/sci --a2po --advantage a2po --business rank --examples all
--tag paper  (the paper's A2PO: rank reward and judge)

Example: sgrec train --run runs/sci --a2po --resume  (after an interruption)

Several GPUs: torchrun --nproc_per_node 4 -m sgrec_cli.cli train -r runs/sci  (-r: torchrun
would take --run for its own --run-path)""")
def train(call: Resolved) -> None:
    from .distributed import main_process

    p = call.params
    title, summary, table = {"generator": _train_generator, "sasrec": _train_sasrec,
                             "a2po": _train_a2po}[call.mode](p["run"], call.config, p)
    if not main_process():  # under torchrun only rank 0 reports
        return
    if p["as_json"]:
        _print_json(summary)
    else:
        out.print(show.key_value_table(title, table))


def _train_a2po(run: Path, cfg: A2POConfig, p: dict) -> tuple[str, dict, list]:
    from .rl.step import run_step

    summary = run_step(run, cfg, resume=p["resume"], progress=p["progress"], log=emit,
                       on_row=show.a2po_validations(_rows))
    return (f"A2PO ({cfg.advantage}) -> {run / cfg.step}", summary,
            show.a2po_summary(summary))


def _train_generator(run: Path, cfg: SFTConfig, p: dict) -> tuple[str, dict, list]:
    from .generator.step import run_step

    summary = run_step(run, cfg, resume=p["resume"], log=emit, progress=p["progress"],
                       on_epoch=show.sft_epochs(_rows))
    return f"generator -> {run / 'sft'}", summary, show.sft_summary(summary)


def _train_sasrec(run: Path, cfg: SASRecConfig, p: dict) -> tuple[str, dict, list]:
    from .baselines.step import run_step

    summary = run_step(run, cfg, on_epoch=show.sasrec_epochs(_rows))
    return f"SASRec -> {run / 'sasrec'}", summary, show.sasrec_summary(summary)


# --------------------------------------------------------------------------------- judge

judge_app = typer.Typer(no_args_is_help=False, rich_markup_mode=None,
                        subcommand_metavar="[show --user USER]",
                        context_settings={"max_content_width": 100})
app.add_typer(judge_app, name="judge",
              short_help="RUN/sft -> RUN/judge (semantic rewards); `judge show` explains one.")
# not required here, where Click would ask for it before `judge show` (which takes its own)
JUDGE_RUN = Param("run", Annotated[Path | None, typer.Option(
    "--run", "-r", envvar="SGREC_RUN", show_envvar=True, show_default=False,
    help="Run directory of this experiment (created by prepare).  [required]")])
JUDGE = _single("judge", JudgeConfig, JUDGE_RUN, Param("force", Annotated[bool, typer.Option(
    "--force", help="Replace a RUN/judge that covers more users than this judge.")],
    default=False),
    PROGRESS, JSON)
JUDGE_HELP = """The Personalized Semantic Judge: aspect evidence for candidate pairs of training
users, a user-conditional aggregator, semantic rewards (RUN/judge). `sgrec judge show`
explains one user.

Example: sgrec judge --run runs/sci --backend embedding

Example: sgrec judge --run runs/sci --backend trained

Example: sgrec judge --run runs/sci --backend llm --llm smollm2 --max-users 500

Example: sgrec judge --run runs/sci --backend openai --api-base http://gpu:8000/v1
--api-model Qwen/Qwen2.5-7B-Instruct

Example: sgrec judge show --run runs/sci --user 17"""


@handle_errors
def _judge(ctx: typer.Context, **kwargs: Any) -> None:
    if ctx.invoked_subcommand is None:
        from .cliopts import resolve

        _run_judge(resolve(JUDGE, kwargs))


def _run_judge(call: Resolved) -> None:
    from .judge.step import run_step

    p = call.params
    if p["run"] is None:
        raise ConfigError("Missing option '--run' / '-r' (env var: 'SGREC_RUN')")
    summary = run_step(p["run"], call.config, progress=p["progress"], log=emit,
                       force=p["force"])
    agg = summary["aggregator"]
    if agg.get("small_sample"):
        emit(f"[yellow]warning:[/] {escape(agg['small_sample'])}", markup=True)
    if p["as_json"]:
        _print_json(summary)
        return
    for line in show.judge_summary(summary):
        out.print(line, highlight=False, soft_wrap=True, markup=False)


def _register_judge() -> None:
    import inspect

    from .cliopts import signature

    sig = signature(JUDGE)
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                            annotation=typer.Context)
    _judge.__signature__ = sig.replace(parameters=[ctx, *sig.parameters.values()])
    judge_app.callback(invoke_without_command=True, help=JUDGE_HELP)(_judge)


_register_judge()


@judge_app.command("show")
@handle_errors
def judge_show(
    user: Annotated[str, typer.Option(
        help="Source user id (as in the raw data), e.g. A2X9XYZ.")],
    run: RUN.annotation,
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates to show.")] = 20,
    as_json: JSON.annotation = False,
) -> None:
    """A judged user's candidates with aspect scores, weights w(x), reward and evidence.

    Example: sgrec judge show --run runs/sci --user 17
    """
    from .judge.step import show_user

    res = show_user(run, user, k)
    if as_json:
        _print_json(res)
        return
    for item in show.judge_user(res):
        out.print(item, highlight=False, soft_wrap=True, markup=False)


# ---------------------------------------------------------------------------------- eval


EVAL = _single("eval", EvalConfig, RUN, JSON)


@_command(EVAL, "eval",
          "Recall/NDCG@K of trained models, paired bootstrap tests.", """Recall/NDCG@{1,5,10,20},
invalid/duplicate rate, coverage, and paired bootstrap tests between the models.

Results of models evaluated earlier on a split stay in RUN/eval (and in the comparisons) while
their model and data are unchanged; a model retrained since is dropped, with a note.

Example: sgrec eval --run runs/sci --model sft --model sasrec --model popular""")
def evaluate(call: Resolved) -> None:
    from .eval.step import run_step

    report = run_step(call.params["run"], call.config)
    if call.params["as_json"]:
        _print_json(report)
        return
    for item in show.eval_report(report):
        out.print(item, highlight=False, soft_wrap=True, markup=False)


# ----------------------------------------------------------------------- recommend, serve

RECOMMEND = _single("recommend", RecommendConfig, RUN, Param("history", Annotated[
    list[str] | None, typer.Option(
        help="Item ids, oldest first, comma-separated, e.g. 12,7,30; repeat for several "
             "users.", show_default=False)]),
    Param("user", Annotated[list[str] | None, typer.Option(
        help="A user of the dataset (their whole sequence is the history); repeatable.",
        show_default=False)]),
    Param("users_file", Annotated[Path | None, typer.Option(
        "--users", help='File of users: JSON lines {"user": "u1", "history": ["12", "7"]} or '
        "one comma-separated history per line, e.g. 12,7,30.", show_default=False)]),
    Param("output", Annotated[Path | None, typer.Option(
        "--out", help="Also write the results as JSON lines to this file.",
        show_default=False)]), JSON)


@_command(RECOMMEND, "recommend", "Top-K items for histories, users or a file of users.",
          """Top-K items with their titles and semantic IDs for histories, users or a file of
users, from a trained model of the run.

Example: sgrec recommend --run runs/sci --history 12,7,30 --k 10""")
def recommend(call: Resolved) -> None:
    from .artifacts import atomic_write_text
    from .errors import BadInputError
    from .rundir import Run
    from .serve.recommend import parse_history, read_requests, user_requests
    from .serve.recommend import recommend as do_recommend

    p, cfg = call.params, call.config
    the_run = Run(p["run"])
    requests = [parse_history(h) for h in p["history"] or []]
    if p["user"]:
        requests += user_requests(the_run.data, p["user"])
    if p["users_file"] is not None:
        requests += read_requests(p["users_file"])
    if not requests:
        raise BadInputError("nothing to recommend for: give --history, --user or --users FILE")
    results = do_recommend(the_run, requests, cfg)
    if p["output"] is not None:
        atomic_write_text(p["output"], "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                               for r in results))
    if p["as_json"]:
        _print_json(results)
        return
    for n, res in enumerate(results, start=1):
        out.print(show.recommendations(res, n, cfg))


SERVE = _single("serve", ServeConfig, RUN)


@_command(SERVE, "serve",
          "An HTTP JSON API for one trained model (batched).", """An HTTP JSON API for one
trained model: POST /recommend, GET /health, /ready, /info. Concurrent requests are answered
by one batched search. Stops on Ctrl-C or SIGTERM.

Example: sgrec serve --run runs/sci --port 8000, then
curl -s localhost:8000/recommend -d '{"history": ["12", "7"], "k": 5}'""")
def serve(call: Resolved) -> None:
    from .serve.server import serve as do_serve

    do_serve(call.params["run"], call.config, say=emit)


# ------------------------------------------------------------------------- report, info


REPORT = _single("report", ReportConfig, RUN)


@_command(REPORT, "report", "PNG plots of a run into RUN/report/.", """PNG plots: A2PO
training curves and the eval comparison, into RUN/report/.

Example: sgrec report --run runs/sci""")
def report(call: Resolved) -> None:
    from .report import make_report

    run = call.params["run"]
    for name in make_report(run, call.config):
        out.print(str(Path(run) / "report" / name), highlight=False, soft_wrap=True, markup=False)


# step folder -> (the command's spec, its mode): what `info --config STEP` prints
STEP_SPECS = {"data": (PREPARE, "prepare"), "sids": (SIDS, "build-sids"),
              "sft": (TRAIN, "generator"), "sasrec": (TRAIN, "sasrec"),
              "judge": (JUDGE, "judge"), "eval": (EVAL, "eval"), "report": (REPORT, "report")}


def step_config(run: Path, step: str) -> str:
    """The TOML that reproduces RUN/<step> (`sgrec info --config STEP`)."""
    from .artifacts import load_manifest

    spec, mode = STEP_SPECS.get(step, (TRAIN, "a2po") if step.startswith("a2po") else
                                (None, None))
    if spec is None:
        raise ConfigError(f"--config {step!r}: no step of that name has a config; use one of "
                          f"{', '.join([*STEP_SPECS, 'a2po', 'a2po-TAG'])}")
    m = load_manifest(Path(run), step)
    header = [f"sgrec {spec.command} --run RUN --config THIS_FILE reproduces "
              f"{run}/{step}", f"(from its manifest: sgrec {m.data.get('sgrec_version')}, "
              f"{m.data.get('created_at')})"]
    return config_toml(spec, mode, m.config, header)


@app.command(short_help="What a run holds: steps, their state and key figures.")
@handle_errors
def info(
    run: RUN.annotation,
    config: Annotated[str | None, typer.Option(
        "--config", help="Print the TOML config file that reproduces this finished step (a "
        "folder of the run: data, sids, sft, sasrec, judge, a2po, a2po-TAG, eval, report).",
        show_default=False)] = None,
    as_json: JSON.annotation = False,
) -> None:
    """Show the steps a run directory holds, their manifests and key stats, and any
    interrupted training that --resume can continue.

    Example: sgrec info --run runs/sci

    Example: sgrec info --run runs/sci --config sft > sft.toml
    """
    from .info import run_info

    if config is not None:
        sys.stdout.write(step_config(run, config))
        return
    res = run_info(run)
    if as_json:
        _print_json(res)
        return
    for line in show.run_info_lines(res, run):
        out.print(line, highlight=False, soft_wrap=True, markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
