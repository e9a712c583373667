"""A2PO step throughput on this machine: groups/second and the time split (rollout, reward,
update) per setting, measured back to back in one script so the ratios compare like with like
(these machines are shared and noisy).

Needs a run with data, sids, sft (and judge for the a2po settings). Each setting trains
``--groups`` groups (steps = groups / its groups per step) into RUN/a2po-speed-<setting>, with
validation only at the start and the end (on ``--valid-users``), which the timing excludes.
Settings: beam, sample, beam-ppo4 (a2po, 32 groups per step: rollout and update variants) and
biz-b32, biz-b1024 (business-only GRPO at 32 and 1,024 groups per step, chunks of 256), and
default (`train --a2po`'s defaults: the fused SASRec teacher, 1,024 groups per step; needs
RUN/sasrec) and default-w1 (SASRec alone as the teacher).

Usage (RUN: a run with data, sids, sft and judge; see bench/README.md):
  python bench/a2po_speed.py --run RUN --out bench/results/a2po_speed.json
  python bench/a2po_speed.py --run RUN --settings biz-b32,biz-b1024 --groups 4096 \
      --out bench/results/a2po_speed_batch.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import A2PO_BEFORE_RECIPE, RESULTS, sgrec_json, write_result

# every setting but the defaults' starts from the old recipe (its budget is the bench's)
_BEFORE = A2PO_BEFORE_RECIPE
# name -> (flags, groups per step)
SETTINGS = {"beam": ([*_BEFORE], 32), "sample": ([*_BEFORE, "--rollout", "sample"], 32),
            "beam-ppo4": ([*_BEFORE, "--ppo-epochs", "4"], 32),
            "biz-b32": ([*_BEFORE, "--advantage", "biz"], 32),
            "biz-b1024": ([*_BEFORE, "--advantage", "biz"], 1024),
            # today's default (needs RUN/sasrec): the fused teacher at the next position
            "default": ([], 1024),
            # the same with SASRec alone as the teacher: no reference scores in the teacher
            "default-w1": (["--ranker-weight", "1"], 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--settings", default="beam,sample,beam-ppo4")
    ap.add_argument("--groups", type=int, default=960, help="groups trained per setting")
    ap.add_argument("--valid-users", default="200")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of each run")
    ap.add_argument("--out", type=Path, default=RESULTS / "a2po_speed.json")
    args = ap.parse_args()
    names = args.settings.split(",")
    results: dict = {"groups": args.groups, "group_size": 16, "settings": {}}
    for name in names:
        extra, batch = SETTINGS[name]
        steps = max(1, args.groups // batch)
        out = sgrec_json("train", "--run", str(args.run), "--a2po", "--tag", f"speed-{name}",
                         "--steps", str(steps), "--eval-every", str(steps), "--batch-users",
                         str(batch), "--valid-users", args.valid_users, "--select-alpha", "1",
                         *extra, "--no-progress", threads=args.threads)
        rows = [json.loads(x) for x in
                (args.run / f"a2po-speed-{name}" / "train_log.jsonl").open()][1:]
        train_s = sum(r["rollout_s"] + r["reward_s"] + r["update_s"] for r in rows)
        results["settings"][name] = {
            "batch_users": batch, "steps": steps,
            # steps only (validation excluded), so settings compare on the RL step itself
            "groups_per_s": round(len(rows) * batch / train_s, 2),
            "time_share": out["time_share"],
        }
    base = results["settings"][names[0]]["groups_per_s"]
    for row in results["settings"].values():
        row[f"ratio_to_{names[0]}"] = round(row["groups_per_s"] / base, 3)
    print(json.dumps(write_result(args.out, results, threads=args.threads), indent=2))


if __name__ == "__main__":
    main()
