"""`sgrec report`: PNG plots of a run — A2PO training curves (every RUN/a2po* step) and the
eval results of every model (per split) — written to RUN/report/ (atomically, with a manifest)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import list_steps, load_manifest, staged_step, write_manifest
from .errors import ArtifactError
from .eval.step import stats_splits
from .options import StepConfig, option
from .runlock import writes_run
from .validate import check_ints


@dataclass
class ReportConfig(StepConfig):
    """`sgrec report`: PNG plots of a run into RUN/report/."""

    window: int = option(20, "Moving-average window of the step curves.")

    def validate(self) -> None:
        check_ints(self, ("window",), 1)

CURVES = (("mean_r_biz", "mean business reward"), ("mean_r_sem", "mean semantic reward"),
          ("hit_fraction", "groups containing the next item"),
          ("sign_agreement", "sign agreement A_biz / A_sem"), ("mean_lambda", "mean lambda"),
          ("kl", "KL to SFT (k3)"), ("clip_fraction", "clip fraction"),
          ("valid_ndcg@10", "validation NDCG@10"))
EVAL_COLS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def smooth(values: list[float | None], window: int) -> np.ndarray:
    """Trailing moving average that skips missing values (NaN where a window has none)."""
    x = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.full(x.shape, np.nan)
    for i in range(len(x)):
        w = x[max(0, i - window + 1): i + 1]
        w = w[~np.isnan(w)]
        if w.size:
            out[i] = w.mean()
    return out


def _curves(runs: dict[str, list[dict]], path: Path, window: int) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (key, title) in zip(axes.flat, CURVES, strict=True):
        for name, rows in runs.items():
            pts = [(r["step"], r.get(key)) for r in rows if key in r]
            if not pts:
                continue
            steps = [p[0] for p in pts]
            vals = [p[1] for p in pts]
            y = np.asarray([np.nan if v is None else v for v in vals]) if key == \
                "valid_ndcg@10" else smooth(vals, window)
            ax.plot(steps, y, label=name, marker="o" if key == "valid_ndcg@10" else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _eval_bars(splits: dict, path: Path) -> None:
    """One panel per evaluated split, a bar group per metric, a bar per model it holds."""
    import matplotlib.pyplot as plt

    n = max(len(s["models"]) for s in splits.values())
    fig, axes = plt.subplots(1, len(splits), squeeze=False,
                             figsize=(len(splits) * max(6, 1.6 * n * len(EVAL_COLS) / 3), 4.5))
    xs = np.arange(len(EVAL_COLS))
    for ax, (split, s) in zip(axes.flat, splits.items(), strict=True):
        width = 0.8 / len(s["models"])
        for i, (m, res) in enumerate(s["models"].items()):
            ax.bar(xs + i * width, [res[c] for c in EVAL_COLS], width, label=m)
        ax.set_xticks(xs + 0.4 - width / 2, EVAL_COLS)
        ax.set_title(f"{split} ({s['users']:,} users)")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@writes_run
def make_report(run: Path, cfg: ReportConfig | None = None) -> list[str]:
    """Draw what the run holds; returns the file names written into RUN/report/."""
    import matplotlib

    matplotlib.use("Agg")
    cfg = cfg or ReportConfig()
    started = time.time()
    run = Path(run)
    if not run.is_dir():
        raise ArtifactError("run directory does not exist; start with `sgrec prepare SOURCE "
                            f"--run {run}`", run)
    runs, inputs = {}, {}
    for step in list_steps(run):
        if step == "a2po" or step.startswith("a2po-"):
            m = load_manifest(run, step)
            inputs[f"{step}/manifest.json"] = m.digest
            with open(run / step / "train_log.jsonl", encoding="utf-8") as f:
                runs[step] = [json.loads(line) for line in f if line.strip()]
    stats = None
    if (run / "eval").is_dir():
        m = load_manifest(run, "eval")
        inputs["eval/manifest.json"] = m.digest
        stats = stats_splits(json.loads((run / "eval" / "stats.json").read_text("utf-8")))
    if not runs and not stats:
        raise ArtifactError("nothing to plot: no a2po or eval step in this run; run "
                            "`sgrec train --a2po` or `sgrec eval` first", run)
    written = []
    with staged_step(run, "report") as tmp:
        if runs:
            _curves(runs, tmp / "a2po_curves.png", cfg.window)
            written.append("a2po_curves.png")
        if stats:
            _eval_bars(stats, tmp / "eval.png")
            written.append("eval.png")
        write_manifest(tmp, step="report", config=cfg.to_dict(), seed=None,
                       started=started, inputs=inputs, dataset={})
    return written
