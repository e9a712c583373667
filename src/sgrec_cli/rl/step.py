"""`sgrec train --a2po`: RUN/sft + RUN/judge -> RUN/a2po (or RUN/a2po-<tag>).

The policy starts from the SFT generator; a frozen copy is the KL reference. Semantic rewards
come from the judge: recomputed for any (history, item) from the item embeddings and the
judge's aggregator when the judge used the embedding backend, otherwise looked up in the judge's
table of (user, item) rewards (missing -> the group falls back to A_biz). Every ``eval_every``
steps the policy is scored on validation users (NDCG@10, history excluded); the best state,
the SFT start included, is kept in ``best/``.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..artifacts import load_manifest, staged_step, write_jsonl, write_manifest
from ..data.store import load_data
from ..device import resolve_device
from ..errors import ArtifactError
from ..eval.metrics import per_user_metrics, ranks_of_targets, summarize
from ..generator.model import load_generator, save_generator
from ..generator.trie import SidTrie
from ..progress import progress_bar
from ..recommend import generator_top_items
from ..sids.build import load_sids
from .a2po import A2POConfig, SemanticFn, a2po_step


def semantic_reward(run: Path, emb: np.ndarray, sids_digest: str) -> tuple[SemanticFn, str]:
    """(r_sem function, how it is computed) from a finished RUN/judge built on these SIDs."""
    from safetensors.numpy import load_file

    from ..judge.aggregator import Aggregator, user_features
    from ..judge.embedding import EmbeddingBackend
    from ..judge.step import load_rewards

    users, items, rewards, manifest = load_rewards(run)
    folder = Path(run) / "judge"
    if manifest["inputs"].get("sids/manifest.json") != sids_digest:
        raise ArtifactError("the judge was built on other SIDs / embeddings; run `sgrec judge` "
                            "again", folder / "manifest.json")
    if manifest["config"].get("backend") == "embedding":
        meta = json.loads((folder / "aggregator.json").read_text(encoding="utf-8"))
        state = {k: torch.from_numpy(v) for k, v in
                 load_file(str(folder / "aggregator.safetensors")).items()}
        agg = Aggregator.from_state_dict(state, meta["aspects"])
        backend = EmbeddingBackend(emb)

        def live(user, history, cand):
            s, _, _ = backend.score(history, cand)  # (G, A)
            w = agg.weights(user_features([list(history)], emb))[0]  # (A,)
            return s @ w

        return live, "embedding (recomputed per rollout)"
    table = {(int(u), int(i)): float(r) for u, i, r in zip(users, items, rewards, strict=True)}

    def lookup(user, history, cand):
        return np.asarray([table.get((int(user), int(i)), np.nan) for i in cand])

    return lookup, f"judge table ({manifest['config'].get('backend')}, {len(table):,} pairs)"


def _valid_ndcg(model, vocab, trie, codes, valid, max_history: int) -> float:
    """NDCG@10 on validation targets, history excluded: the protocol of `sgrec eval`."""
    top, _ = generator_top_items(model, vocab, trie, codes, [list(e.history) for e in valid],
                                 10, 20, max_history, exclude_history=True, fill=True)
    ranks = ranks_of_targets(top, np.asarray([e.target for e in valid], dtype=np.int64))
    return summarize(per_user_metrics(ranks, ks=(10,)))["ndcg@10"]


def run_a2po(run: Path, cfg: A2POConfig, tag: str | None = None, progress: bool = True,
             log=None) -> dict:
    started = time.time()
    run = Path(run)
    step = "a2po" if not tag else f"a2po-{tag}"
    data = load_data(run)
    sids = load_sids(run)
    sft_m = load_manifest(run, "sft")
    if sft_m.data["inputs"].get("sids/manifest.json") != sids.manifest.digest:
        raise ArtifactError("the generator was trained on other SIDs; run `sgrec train` again",
                            sft_m.path)
    judge_m = load_manifest(run, "judge")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, gen_cfg, vocab = load_generator(sft_m.path.parent / "best", device=device)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    max_history = int(sft_m.config.get("max_history", 20))
    codes = sids.codes
    trie = SidTrie.from_codes(codes, vocab.codebook_sizes)
    semantic, how = semantic_reward(run, sids.embeddings(), sids.manifest.digest)
    if log:
        log(f"a2po: advantage {cfg.advantage}, G={cfg.group_size}, rho={cfg.rho}, "
            f"semantic reward from the {how}")
    train = data.split("train")
    valid = data.split("valid")
    if cfg.valid_users and cfg.valid_users < len(valid):
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(valid), cfg.valid_users,
                                                              replace=False))
        valid = [valid[i] for i in pick]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)

    best = {"step": 0, "valid_ndcg@10": _valid_ndcg(model, vocab, trie, codes, valid,
                                                     max_history)}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows: list[dict] = [{"step": 0, "valid_ndcg@10": best["valid_ndcg@10"]}]
    t_train = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(f"a2po ({cfg.advantage})", total=cfg.steps, info="")
        for s in range(1, cfg.steps + 1):
            pick = rng.choice(len(train), size=cfg.batch_users, replace=False)
            batch = [(train[i].user, list(train[i].history), train[i].target) for i in pick]
            row = {"step": s, **a2po_step(model, ref, opt, cfg, vocab, trie, codes, batch,
                                          semantic, max_history, rng)}
            if s % cfg.eval_every == 0 or s == cfg.steps:
                row["valid_ndcg@10"] = _valid_ndcg(model, vocab, trie, codes, valid,
                                                   max_history)
                if row["valid_ndcg@10"] > best["valid_ndcg@10"]:
                    best = {"step": s, "valid_ndcg@10": row["valid_ndcg@10"]}
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            rows.append(row)
            bar.update(task, advance=1, info=f"hit {row['hit_fraction']:.2f} kl {row['kl']:.4f}"
                                             f" best N@10 {best['valid_ndcg@10']:.4f}")
    seconds = time.perf_counter() - t_train
    timed = rows[1:]
    split = {k: round(sum(r[k] for r in timed), 2) for k in ("rollout_s", "reward_s", "update_s")}
    total = sum(split.values()) or 1.0
    summary = {"advantage": cfg.advantage, "semantic": how, "best": best, "steps": cfg.steps,
               "groups_per_s": round(cfg.steps * cfg.batch_users / seconds, 2),
               "time_share": {k: round(v / total, 3) for k, v in split.items()},
               "seconds": round(seconds, 1)}
    model.load_state_dict(best_state)
    with staged_step(run, step) as tmp:
        save_generator(model, gen_cfg, tmp / "best")
        write_jsonl(tmp / "train_log.jsonl", rows)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                          encoding="utf-8")
        write_manifest(tmp, step=step, config={**cfg.to_dict(), "max_history": max_history,
                                               "tag": tag}, seed=cfg.seed, started=started,
                       inputs={"data/manifest.json": data.manifest.digest,
                               "sids/manifest.json": sids.manifest.digest,
                               "sft/manifest.json": sft_m.digest,
                               "judge/manifest.json": judge_m.digest},
                       dataset=data.manifest.dataset)
    return summary
