"""What a person reads: tables and aligned rows for the CLI's human output (``--json`` and the
log files carry the machine-readable form). No logic beyond formatting lives here."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Table

ELLIPSIS = "…"


def clip(text: Any, width: int) -> str:
    """``text`` cut to ``width`` characters, with "…" when something was cut."""
    s = "" if text is None else str(text)
    return s if len(s) <= width else s[: max(0, width - 1)] + ELLIPSIS


def num(value: Any, digits: int = 4) -> str:
    """A number for a table: fixed decimals for floats, thousands separators for ints."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return str(value)


def key_value_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in rows:
        table.add_row(k, v)
    return table


class RowPrinter:
    """Aligned rows with a header line, printed one at a time as a long step produces them
    (a table that grows while training runs, on a terminal and in a log file alike).

    ``columns``: (header, width, formatter of the row).
    """

    def __init__(self, columns: Sequence[tuple[str, int, Callable[[dict], str]]],
                 write: Callable[[str], None]):
        self.columns = columns
        self.write = write
        self._header_done = False

    def __call__(self, row: dict) -> None:
        if not self._header_done:
            self.write("  ".join(h.rjust(w) for h, w, _ in self.columns))
            self._header_done = True
        self.write("  ".join(f(row).rjust(w) for _, w, f in self.columns))


def _get(key: str, digits: int = 4) -> Callable[[dict], str]:
    return lambda row: num(row.get(key), digits)


def sft_epochs(write: Callable[[str], None]) -> RowPrinter:
    return RowPrinter([("epoch", 5, _get("epoch")), ("loss", 7, _get("loss")),
                       ("valid loss", 10, _get("valid_loss")),
                       ("lr", 9, lambda r: f"{r['lr']:.2e}"),
                       ("valid R@10", 10, _get("valid_recall@10")),
                       ("valid N@10", 10, _get("valid_ndcg@10")),
                       ("seconds", 8, lambda r: f"{r.get('seconds', 0):.1f}")], write)


def sasrec_epochs(write: Callable[[str], None]) -> RowPrinter:
    return RowPrinter([("epoch", 5, _get("epoch")), ("loss", 7, _get("loss")),
                       ("valid R@10", 10, _get("recall@10")),
                       ("valid N@10", 10, _get("ndcg@10"))], write)


def a2po_validations(write: Callable[[str], None]) -> RowPrinter:
    return RowPrinter([("step", 5, _get("step")), ("hit", 6, _get("hit_fraction", 3)),
                       ("biz var", 7, _get("biz_var_share", 3)),
                       ("r_biz", 7, _get("mean_r_biz", 3)), ("kl", 9, _get("kl", 3)),
                       ("valid N@10", 10, _get("valid_ndcg@10"))], write)


def generator_modes(m: dict) -> str:
    """'item inputs + text, hybrid scoring (dense weight 0.5)' from a generator's modes."""
    inputs = "item inputs" if m.get("input") == "items" else "SID-token inputs"
    if m.get("text"):
        inputs += " + text"
    if m.get("recency"):
        inputs += " + recency"
    if m.get("ids"):
        inputs += " + item ids"
    score = (f"hybrid scoring (dense weight {m.get('hybrid_weight')})"
             if m.get("score") == "hybrid" else "generator scoring")
    return f"{inputs}, {score}"


def sft_summary(s: dict) -> list[tuple[str, str]]:
    best = s.get("best", {})
    rows = [("best epoch", f"{s['best_epoch']} of {s['epochs_run']} run"
             + (" (stopped early)" if s.get("stopped_early") else "")),
            ("valid Recall@10", num(best.get("valid_recall@10"))),
            ("valid NDCG@10", num(best.get("valid_ndcg@10"))),
            ("validation users", num(s.get("valid_users"))),
            ("training examples", num(s.get("train_examples"))),
            ("history length", num(s.get("max_history"))),
            ("training time", f"{s['seconds']:.1f} s")]
    modes = s.get("modes")
    if modes:
        rows.insert(0, ("model", generator_modes(modes)))
    tuned = s.get("hybrid_weight")
    if tuned:
        curve = tuned.get("valid_ndcg@10", {})
        at = {float(w): v for w, v in curve.items()}
        rows.append(("hybrid weight", f"{tuned['chosen']} chosen on validation (NDCG@10 "
                     f"{num(at.get(float(tuned['chosen'])))}; "
                     f"{num(at.get(float(tuned['trained_with'])))} at "
                     f"{tuned['trained_with']}, generator alone (0) "
                     f"{num(at.get(0.0))})"))
    if not s.get("finished", True):
        rows.append(("finished", "no: continue with --resume"))
    return rows


def sasrec_summary(s: dict) -> list[tuple[str, str]]:
    best = s["best_valid"]
    return [("best epoch", f"{s['best_epoch']} of {s['epochs_run']} run"),
            ("valid Recall@10", num(best.get("recall@10"))),
            ("valid NDCG@10", num(best.get("ndcg@10"))),
            ("history length", num(s.get("max_history"))),
            ("training time", f"{s['seconds']:.1f} s")]


def _selection_rows(sel: dict | None) -> list[tuple[str, str]]:
    """The kept state and the paired test that decided it (runs before it existed: none)."""
    if not sel or not sel.get("best_step"):
        return []
    kept = ("the best state" if sel["kept_step"] else
            f"the SFT start (step {sel['best_step']} not significantly better)")
    return [("kept", kept),
            ("best − start valid NDCG@10", f"{sel['valid_diff']:+.4f}, p={sel['p_value']:.4f} "
             f"(paired bootstrap, {sel['n_users']:,} users, keep if p < {sel['alpha']:g})")]


def a2po_summary(s: dict) -> list[tuple[str, str]]:
    if not s.get("finished", True):
        return [("stopped after step", num(s["step"])), ("checkpoint", s["checkpoint"]),
                ("finished", "no: continue with --resume")]
    best = s["best"]
    share = s.get("time_share", {})
    return [("advantage", s["advantage"]), ("semantic reward", s["semantic"]),
            ("best valid NDCG@10", f"{best['valid_ndcg@10']:.4f} at step {best['step']}"
             + (" (the SFT start)" if best["step"] == 0 else "")),
            *_selection_rows(s.get("selection")),
            ("steps", num(s["steps"])), ("groups per second", num(s.get("groups_per_s"), 2)),
            ("time in rollout / reward / update",
             # (runs of sgrec before this layout named the keys rollout_s, ...)
             " / ".join(f"{100 * share.get(k, share.get(f'{k}_s', 0)):.0f}%"
                        for k in ("rollout", "reward", "update"))),
            ("training time", f"{s['seconds']:.1f} s")]


def comparison_line(c: dict, alpha: float = 0.05) -> str:
    """``a2po − sft NDCG@10 +0.0011 [-0.0005, +0.0027] p=0.2800: no significant difference at
    0.05``: the difference is mean(a) − mean(b), so its sign says which way it goes."""
    from .eval.bootstrap import small_sample

    metric = c["metric"].replace("ndcg", "NDCG").replace("recall", "Recall")
    better = c.get("better")
    small = small_sample(c["n_users"]) if "n_users" in c else None
    if "better" not in c and c["p_value"] < alpha and c["diff"] != 0 and not small:
        better = c["a"] if c["diff"] > 0 else c["b"]
    verdict = f"{better} better" if better else \
        f"not a test: {small}" if small else \
        f"no significant difference at {c.get('alpha', alpha):g}"
    return (f"{c['a']} − {c['b']} {metric} {c['diff']:+.4f} "
            f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p={c['p_value']:.4f}: {verdict}")


# ---------------------------------------------------------------- a step's key figures


def key_stats(step: str, stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The few figures worth a line in the human-readable view of each step."""
    if step == "data" and stats:
        rows = [(k, f"{stats[k]:,}") for k in ("users", "items", "interactions") if k in stats]
        sl = stats.get("sequence_length", {})
        if sl:
            rows.append(("sequence length", f"mean {sl['mean']}, median {sl['median']}, "
                                            f"min {sl['min']}, max {sl['max']}"))
        sp = stats.get("split", {})
        if sp:
            rows.append(("split", f"{sp['train_examples']:,} train / {sp['valid_examples']:,} "
                                  f"valid / {sp['test_examples']:,} test examples, "
                                  f"max history {sp['max_history']}"))
        if stats.get("dropped"):
            rows.append(("dropped", ", ".join(f"{k}={v:,}" for k, v in stats["dropped"].items())))
        return rows
    if step == "sids" and stats:
        return sid_rows(stats)
    if step == "judge" and stats:
        agg = stats["aggregator"]
        auc = ", ".join(f"{k} {v:.3f}" for k, v in agg["auc"].items())
        users = stats.get("users_with_candidates", stats["users"])
        return [("judged", f"{users:,} users, {stats['pairs']:,} pairs "
                           f"({stats['candidates']} candidates) with {stats['backend']}"),
                ("missing", f"{stats['stage_a']['missing_pairs']:,} pairs lack an aspect"),
                ("held-out AUC", auc)] + (
                [("small sample", agg["small_sample"])] if agg.get("small_sample") else [])
    if step == "eval" and stats:
        return eval_rows(stats)
    if not stats:
        return []
    if step == "sft":
        return sft_summary(stats)
    if step == "sasrec":
        return sasrec_summary(stats)
    if step.startswith("a2po"):
        return a2po_summary(stats)
    return [(k, json.dumps(v)) for k, v in stats.items() if not isinstance(v, (dict, list))]


def eval_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per split: every model's NDCG@10 and Recall@10."""
    from .eval.step import stats_splits

    return [(f"{split} ({s['users']:,} users)", "; ".join(
        f"{m} N@10 {r['ndcg@10']:.4f} R@10 {r['recall@10']:.4f}" for m, r in s["models"].items()))
        for split, s in stats_splits(stats).items()]


def sid_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    prefixes = ", ".join(f"{r:.1%}" for r in s["raw_prefix_collision_rates"])
    rows = [
        ("method", f"{s['method']}, {s['levels']} x {s['codebook_size']} codes, "
                   f"dedup {s['dedup']} -> SID length {s['final_sid_length']}"),
        ("items", f"{s['items']:,}"),
        ("raw collision rate", f"{s['raw_collision_rate']:.2%} of items share their SID "
                               f"(prefixes: {prefixes})"),
        ("final collisions", f"{s['final_collisions']} ({s['items_moved_by_dedup']} items moved)"),
        ("codebook use", "; ".join(f"L{u['level']} {u['used']}/{s['codebook_size']} "
                                   f"H={u['entropy_bits']:.2f} bits" for u in s["level_usage"])),
        ("reconstruction", (f"relative error {s['relative_reconstruction_error']:.3f}"
                            if math.isfinite(s["relative_reconstruction_error"]) else
                            "relative error n/a (every item vector is the same)")
         + f", MSE {s['reconstruction_mse']:.4f}"),
    ]
    coh = s.get("semantic_coherence_level1_leaf_category")
    if coh and coh.get("lift") is not None:
        rows.append(("semantic coherence", f"same level-1 code -> same leaf category "
                     f"{coh['p_same_label_same_code']:.1%} vs random "
                     f"{coh['p_same_label_random']:.2%}"
                     f" ({coh['lift']:.1f}x)"))
    sec = s.get("seconds", {})
    if sec:
        rows.append(("time", f"embed {sec['embed']} s (cached: {sec['embeddings_cached']}), "
                             f"quantize {sec['quantize']} s"))
    return rows


# ------------------------------------------------------------------ whole command outputs
# Each returns what a command prints, in order: rich renderables or plain lines (no markup).


def eval_report(report: dict) -> list[Any]:
    """`sgrec eval`: the metrics table, then one line per comparison and per kept/dropped
    earlier result. A model evaluated by an earlier call is marked with "*" (a note below the
    table says so) rather than a label that wraps the column."""
    table = Table(title=f"{report['split']} ({report['users']:,} users)")
    cols = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20"]  # all K in --json
    table.add_column("model", no_wrap=True)
    for c in cols:
        table.add_column(c.replace("recall", "R").replace("ndcg", "N"), justify="right")
    table.add_column("inv/dup", justify="right")
    table.add_column("cov@10", justify="right")
    earlier = False
    for name, m in report["models"].items():
        mark = "" if name in report["evaluated"] else " *"
        earlier = earlier or bool(mark)
        table.add_row(name + mark, *(f"{m[c]:.4f}" for c in cols),
                      f"{m['invalid_rate'] + m['duplicate_rate']:.3f}", f"{m['coverage@10']:.3f}")
    lines: list[Any] = [table]
    if earlier:
        lines.append("* evaluated by an earlier `sgrec eval` (its model and data unchanged)")
    lines += [comparison_line(c) for c in report["comparisons"]]
    if report["kept"]:
        lines.append("kept from earlier evals (model and data unchanged): " + ", ".join(
            f"{k['model']} ({k['split']})" for k in report["kept"]))
    lines += [f"{d['model']} ({d['split']}): dropped, {d['reason']}" for d in report["dropped"]]
    return lines


def judge_summary(summary: dict) -> list[Any]:
    """`sgrec judge`: what was judged, the training (trained backend), the held-out AUC table
    and its paired tests."""
    a, agg = summary["stage_a"], summary["aggregator"]
    lines: list[Any] = [
        f"judged {summary['users_with_candidates']:,} users, {summary['pairs']:,} pairs with "
        f"{summary['backend']}: {a['judged']:,} judged, {a['cached']:,} from cache, "
        f"{a['missing_pairs']:,} pairs missing an aspect, {a['seconds']:.1f} s "
        + (f"({a['pairs_per_s']} pairs/s)" if a["pairs_per_s"] else "(all from cache)")]
    if "training" in summary:
        t = summary["training"]
        lines.append(f"trained on {t['rows']:,} examples of {t['users']:,} fit users in "
                     f"{t['seconds']:.0f} s ({t['steps']} steps, loss {t['train_loss']:.3f})")
    table = Table(title=f"held-out pairwise AUC ({agg['heldout_users']:,} users, "
                        f"{agg['heldout_pairs']:,} pairs)")
    table.add_column("scorer")
    table.add_column("AUC", justify="right")
    for name, value in agg["auc"].items():
        table.add_row(name, f"{value:.4f}")
    lines.append(table)
    for name, t in agg["paired_bootstrap"].items():
        a_name, b_name = name.split(" vs ")
        lines.append(comparison_line({"a": a_name, "b": b_name, "metric": "AUC", **t}))
    return lines


def judge_user(res: dict) -> list[Any]:
    """`sgrec judge show`: the user's weights and recent purchases, one table row of numbers
    per candidate (never squeezed: the title gives way on a narrow terminal), then each
    candidate's evidence on a line of its own."""
    weights = ", ".join(f"{a} {w:.2f}" for a, w in res["weights"].items())
    lines: list[Any] = [
        f"user {res['user_id']} ({res['backend']}; {'held out' if res['heldout'] else 'fit'}):"
        f" weights w(x) = {weights}",
        "recent purchases: " + " | ".join(clip(h["title"], 40) for h in res["history"][-5:])]
    table = Table()
    for col in ("#", "item", *res["weights"], "s_hol"):
        table.add_column(col, justify="left" if col == "item" else "right", no_wrap=True,
                         min_width=len(col))
    table.add_column("title", no_wrap=True, overflow="ellipsis", min_width=10)
    evidence = []
    for n, p in enumerate(res["candidates"], start=1):
        mark = " *" if p["is_target"] else ""
        table.add_row(str(n), p["item_id"] + mark,
                      *("-" if v is None else f"{v:.2f}" for v in p["scores"].values()),
                      "-" if p["reward"] is None else f"{p['reward']:.3f}", clip(p["title"], 60))
        evidence.append(f"  {n:>2}. {p['evidence']}")
    return [*lines, table, "* = the item the user chose next", "evidence:", *evidence]


def recommendations(res: dict, n: int, cfg: Any) -> Table:
    """`sgrec recommend`: one user's list."""
    who = res["user"] if res["user"] is not None else f"history {n}"
    table = Table(title=f"{who} ({res['history']} items) -> top {cfg.k} by {cfg.model}")
    for col in ("#", "item", "title", "SID", "score"):
        table.add_column(col, justify="right" if col in ("#", "score") else "left")
    for r in res["items"]:
        sid = "-".join(map(str, r["sid"])) if r["sid"] is not None else ""
        table.add_row(str(r["rank"]), r["id"], clip(r["title"], 60), sid, f"{r['score']:.3f}")
    return table


def run_info_lines(res: dict, run: Any) -> list[str]:
    """`sgrec info`: who holds the run, each step's state and key figures, and interrupted
    trainings that --resume continues."""
    lines = [f"in use by {who}" for who in res["in_use_by"]]
    if not res["steps"] and not res.get("resumable"):
        return [*lines, f"{run}: no steps yet (start with `sgrec prepare SOURCE --run {run}`)"]
    for s in res["steps"]:
        if s["status"] == "invalid":
            lines.append(f"{s['step']}  invalid: {s['error']}")
            continue
        ds = s.get("dataset", {})
        lines.append(f"{s['step']}  {s['status']}  dataset {ds.get('name')!r} "
                     f"({str(ds.get('fingerprint', ''))[:12]})  {s['created_at']}  "
                     f"{s['wall_time_s']} s  sgrec {s['sgrec_version']}")
        if s["status"] == "stale":
            lines.append(f"    stale: {s['error']}")
        lines += [f"    {k}: {v}" for k, v in key_stats(s["step"], s["stats"])]
    for r in res.get("resumable", []):
        lines.append(f"{r['step']}  interrupted at {r['done']}: `{r['command']}` continues it "
                     "(with the options it was started with)")
    return lines
