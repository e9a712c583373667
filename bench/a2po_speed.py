"""A2PO step throughput on this machine: groups/second and the time split (rollout, reward,
update), for beam and sampled rollouts and one vs four PPO epochs, measured back to back in one
script so the ratios compare like with like (these machines are shared and noisy).

Needs a run with data, sids, sft and judge. Each setting trains ``--steps`` steps into
RUN/a2po-speed-<setting> with validation only at the start and the end (on ``--valid-users``).

Usage:
  python bench/a2po_speed.py --run runs/sci --out bench/results/a2po_speed.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from a2po import sgrec_json  # bench/a2po.py: `sgrec ... --json` in a subprocess

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"beam": [], "sample": ["--rollout", "sample"], "beam-ppo4": ["--ppo-epochs", "4"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--valid-users", default="200")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "a2po_speed.json")
    args = ap.parse_args()
    results: dict = {"steps": args.steps, "batch_users": 32, "group_size": 16, "settings": {}}
    for name, extra in SETTINGS.items():
        out = sgrec_json("train", "--run", str(args.run), "--a2po", "--tag", f"speed-{name}",
                         "--steps", str(args.steps), "--eval-every", str(args.steps),
                         "--valid-users", args.valid_users, *extra, "--no-progress")
        rows = [json.loads(x) for x in
                (args.run / f"a2po-speed-{name}" / "train_log.jsonl").open()][1:]
        train_s = sum(r["rollout_s"] + r["reward_s"] + r["update_s"] for r in rows)
        results["settings"][name] = {
            # steps only (validation excluded), so settings compare on the RL step itself
            "groups_per_s": round(len(rows) * 32 / train_s, 2),
            "time_share": out["time_share"],
        }
    base = results["settings"]["beam"]["groups_per_s"]
    for row in results["settings"].values():
        row["ratio_to_beam"] = round(row["groups_per_s"] / base, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
