"""Sign agreement between A_sem and A_biz that a judge of a given pairwise AUC can reach.

Under the rank reward a group with a business signal has one positive (the next item) and G-1
negatives, so A_biz > 0 for the next item and < 0 for the others; sign agreement is the share
of the group's entries whose A_sem = r_sem - mean(r_sem) has the same sign (as logged by
`sgrec train --a2po`); positive agreement is the same over the next item alone (A_sem > 0 for
it). Model: semantic scores N(0, 1), the next item's shifted up by d. Prints the pairwise AUC
(next item vs each negative), the sign agreement and the positive agreement for each shift.

With --run RUN, the same three figures measured on the held-out users of RUN/judge (each
user's group: the next item and the SFT beam candidates the judge scored), to set beside the
simulation: over all groups, over those whose beams hold the next item (as every A2PO group
with a business signal does) and over those the judge had to append it to.

Usage: python bench/sign_agreement.py [--group-size 16] [--groups 200000] [--run RUN]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def simulate(shift: float, group_size: int, groups: int, rng: np.random.Generator) -> tuple:
    s = rng.normal(size=(groups, group_size))
    s[:, 0] += shift
    a_sem = s - s.mean(axis=1, keepdims=True)
    agree = np.concatenate([a_sem[:, 0] > 0, (a_sem[:, 1:] < 0).ravel()]).mean()
    auc = (s[:, :1] > s[:, 1:]).mean()
    return float(auc), float(agree), float((a_sem[:, 0] > 0).mean())


def heldout(run: Path) -> dict[str, tuple]:
    """Over RUN/judge's held-out users: (users, pairwise AUC, sign agreement, positive
    agreement) for all groups, for the groups whose beams hold the next item (the only ones
    that carry a business gradient in A2PO) and for those where the judge appended it."""
    from judge import heldout_groups  # bench/judge.py (its bench/common.py puts src on the path)

    from sgrec_cli.judge.aggregator import pair_wins

    n_cand = json.loads((run / "judge" / "manifest.json").read_text())["config"]["num_candidates"]
    kinds: dict[str, list] = {"all": [], "next item in the beams": [], "next item appended": []}
    for rows in heldout_groups(run).values():
        where = [i for i, (is_t, _) in enumerate(rows) if is_t]
        if not where:
            continue
        # the judge appends the next item after the candidates when they lack it
        appended = where[0] == len(rows) - 1 and len(rows) > n_cand
        t, r = rows[where[0]][1], np.asarray([r for _, r in rows])
        neg = np.asarray([r for is_t, r in rows if not is_t])
        row = (pair_wins(np.full(neg.shape, t), neg), [t > r.mean(), *(neg < r.mean())],
               t > r.mean())
        kinds["all"].append(row)
        kinds["next item appended" if appended else "next item in the beams"].append(row)
    return {k: (len(v), float(np.concatenate([w for w, _, _ in v]).mean()),
                float(np.mean([a for _, ag, _ in v for a in ag])),
                float(np.mean([p for _, _, p in v]))) for k, v in kinds.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--groups", type=int, default=200_000)
    ap.add_argument("--run", type=Path, help="also measure RUN/judge's held-out users")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.2, 0.4, 1.0, 2.0, 5.0):
        auc, agree, pos = simulate(shift, args.group_size, args.groups, rng)
        print(f"shift {shift:4.1f}: pairwise AUC {auc:.3f}, sign agreement {agree:.3f}, "
              f"positive agreement {pos:.3f}")
    if args.run:
        for kind, (users, auc, agree, pos) in heldout(args.run).items():
            print(f"{args.run}/judge, {kind}, {users} held-out users: pairwise AUC {auc:.3f}, "
                  f"sign agreement {agree:.3f}, positive agreement {pos:.3f}")


if __name__ == "__main__":
    main()
