"""What a person reads: tables and aligned rows for the CLI's human output (``--json`` and the
log files carry the machine-readable form). No logic beyond formatting lives here."""

from __future__ import annotations

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
