"""Sign agreement between A_sem and A_biz that a judge of a given pairwise AUC can reach.

Under the rank reward a group with a business signal has one positive (the next item) and G-1
negatives, so A_biz > 0 for the next item and < 0 for the others; sign agreement is the share
of the group's entries whose A_sem = r_sem - mean(r_sem) has the same sign (as logged by
`sgrec train --a2po`). Model: semantic scores N(0, 1), the next item's shifted up by d. Prints
the pairwise AUC (next item vs each negative) and the sign agreement for each shift.

Usage: python bench/sign_agreement.py [--group-size 16] [--groups 200000]
"""

from __future__ import annotations

import argparse

import numpy as np


def simulate(shift: float, group_size: int, groups: int, rng: np.random.Generator) -> tuple:
    s = rng.normal(size=(groups, group_size))
    s[:, 0] += shift
    a_sem = s - s.mean(axis=1, keepdims=True)
    agree = np.concatenate([a_sem[:, 0] > 0, (a_sem[:, 1:] < 0).ravel()]).mean()
    auc = (s[:, :1] > s[:, 1:]).mean()
    return float(auc), float(agree)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--groups", type=int, default=200_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.4, 1.0, 2.0, 5.0):
        auc, agree = simulate(shift, args.group_size, args.groups, rng)
        print(f"shift {shift:4.1f}: pairwise AUC {auc:.3f}, sign agreement {agree:.3f}")


if __name__ == "__main__":
    main()
