"""`sgrec prepare`: read a raw dataset, canonicalise, split leave-one-out, write RUN/data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import (
    KeepExisting,
    list_steps,
    load_manifest,
    sha256_file,
    staged_step,
    write_manifest,
)
from ..errors import ArtifactError, BadInputError, SgrecError
from ..runlock import writes_run
from .canonical import canonicalize, dataset_stats
from .config import PrepareConfig
from .formats import READERS, detect, reader
from .raw import RawDataset
from .split import split_all
from .store import STEP, write_dataset_files


def detect_format(source: Path) -> str:
    name = detect(source)
    if name is None:
        raise BadInputError(
            "cannot tell the dataset format from the file names; pass --format "
            f"({', '.join(READERS)}) — see data/README.md", source)
    return name


def read_raw(cfg: PrepareConfig) -> RawDataset:
    source = Path(cfg.source)
    if not source.exists():
        raise BadInputError("dataset source does not exist", source)
    fmt = detect_format(source) if cfg.format == "auto" else cfg.format
    raw = reader(fmt).read(source, cfg)
    if cfg.name:
        raw.name = cfg.name
    return raw


@dataclass
class PrepareResult:
    folder: Path
    stats: dict
    manifest: dict
    unchanged: bool
    warnings: list[str]


MIN_USERS = 20  # fewer validation/test users make every metric a coin toss


def data_warnings(stats: dict) -> list[str]:
    """What later steps will refuse or cannot measure well, said at `prepare` already."""
    out = []
    users, split = stats.get("users", 0), stats.get("split", {})
    if split.get("train_examples", 0) == 0:
        out.append("no training examples: every user has only a test, a validation and one "
                   "history item; `sgrec train` needs users with 4 or more interactions")
    if users < MIN_USERS:
        out.append(f"only {users} user{'s' if users != 1 else ''}: validation and test "
                   f"metrics over fewer than {MIN_USERS} users say little (one user's hit "
                   "moves NDCG@10 by several points)")
    return out


@writes_run
def run_step(run: Path, cfg: PrepareConfig, *, force: bool = False) -> PrepareResult:
    """Build ``RUN/data``. An existing ``RUN/data`` holding another dataset, or one that later
    steps depend on and that these settings would change, is kept unless ``force``."""
    started = time.time()
    run = Path(run)
    raw = read_raw(cfg)
    ds = canonicalize(raw, cfg.min_seq_len)
    train, valid, test = split_all(ds.sequences, cfg.max_history)
    stats = dataset_stats(ds)
    stats["split"] = {"train_examples": len(train), "valid_examples": len(valid),
                      "test_examples": len(test), "max_history": cfg.max_history}
    config = {**cfg.to_dict(), "format": raw.format}
    unchanged = True
    with staged_step(run, STEP) as tmp:
        fp = write_dataset_files(tmp, ds, {"train": train, "valid": valid, "test": test}, stats)
        if _check_existing(run, fp, raw.name, config, force) and _same_files(run / STEP, tmp):
            # the same data and settings: the folder, manifest included, is left as it is, so
            # the steps built on it stay valid
            raise KeepExisting
        manifest = write_manifest(
            tmp, step=STEP, config=config, seed=None, started=started,
            inputs={str(p): sha256_file(p) for p in raw.files},
            dataset={"name": raw.name, "fingerprint": fp},
        )
        unchanged = False
    if unchanged:
        manifest = load_manifest(run, STEP, verify=False).data
    return PrepareResult(folder=run / STEP, stats=stats, manifest=manifest, unchanged=unchanged,
                         warnings=raw.warnings + data_warnings(stats))


def _same_files(folder: Path, new: Path) -> bool:
    """``folder`` is intact (its files match its manifest) and holds the files just written."""
    try:
        old = load_manifest(folder.parent, STEP, verify=True)
    except SgrecError:
        return False
    written = {str(p.relative_to(new)): sha256_file(p) for p in new.rglob("*") if p.is_file()}
    return old.data["outputs"] == written


def _check_existing(run: Path, fp: str, name: str, config: dict, force: bool) -> bool:
    """Return True when ``RUN/data`` already holds exactly this dataset and split config."""
    if not (run / STEP).exists():
        return False
    try:
        old = load_manifest(run, STEP, verify=False)
    except SgrecError as e:
        if force:
            return False
        raise ArtifactError(f"holds an unusable data/ folder ({e}); use --force to replace it",
                            run) from None
    old_fp = old.dataset.get("fingerprint")
    if old_fp != fp:
        if force:
            return False
        raise ArtifactError(
            f"run directory already holds another dataset ({old.dataset.get('name')!r}, "
            f"fingerprint {str(old_fp)[:12]}) than this one ({name!r}, {fp[:12]}); "
            "use a new --run, or --force to replace it", run)
    old_cfg = {k: v for k, v in old.config.items() if k != "source"}
    new_cfg = {k: v for k, v in config.items() if k != "source"}
    later = [s for s in list_steps(run) if s != STEP]
    if old_cfg != new_cfg and later and not force:
        diff = ", ".join(f"{k} {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}"
                         for k in sorted(set(old_cfg) | set(new_cfg))
                         if old_cfg.get(k) != new_cfg.get(k))
        raise ArtifactError(
            f"data/ would change ({diff}) under later steps ({', '.join(later)}); "
            "use a new --run, or --force", run)
    return old_cfg == new_cfg
