"""A run directory as one object: each artifact is opened and checked once per command.

``Run(path)`` loads a step's manifest (re-hashing its files) the first time it is asked for and
keeps it; ``run.data`` and ``run.sids`` are loaded once too. ``run.step(name, needs=...)`` is the
one check that a step's folder was built from the artifacts the run holds now (by manifest
digest), with one error that names the command to run again.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .artifacts import Manifest, load_manifest, not_a_file, producer, require_same_dataset
from .errors import ArtifactError

if TYPE_CHECKING:
    from .data.store import PreparedData
    from .sids.store import SemanticIds


class Run:
    """One run directory; artifacts are verified once and cached for the command's lifetime."""

    def __init__(self, path: Path | str):
        self.path = not_a_file(Path(path))
        self._manifests: dict[str, Manifest] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def manifest(self, step: str) -> Manifest:
        """RUN/<step>/manifest.json, checked (files re-hashed) on first use only."""
        if step not in self._manifests:
            self._manifests[step] = load_manifest(self.path, step)
        return self._manifests[step]

    def forget(self, step: str) -> None:
        """Drop a cached manifest (after this command rewrote the step)."""
        self._manifests.pop(step, None)
        if step == "data":
            self.__dict__.pop("data", None)
        if step in ("data", "sids"):
            self.__dict__.pop("sids", None)

    def has(self, step: str) -> bool:
        return (self.path / step).is_dir()

    @cached_property
    def data(self) -> PreparedData:
        from .data.store import PreparedData

        m = self.manifest("data")
        if "fingerprint" not in m.dataset:
            raise ArtifactError("manifest has no dataset fingerprint", m.path)
        return PreparedData(manifest=m, folder=self.path / "data")

    @cached_property
    def sids(self) -> SemanticIds:
        from .sids.store import open_sids

        # another dataset is the more telling refusal, so it is checked first
        require_same_dataset(self.manifest("sids"), self.data.fingerprint)
        return open_sids(self.step("sids", needs=("data",)))

    def step(self, step: str, needs: tuple[str, ...] = ("data",)) -> Manifest:
        """RUN/<step>'s manifest, refused unless it was built from the run's current ``needs``
        (each a step whose manifest digest it recorded as an input)."""
        m = self.manifest(step)
        for need in needs:
            if m.data.get("inputs", {}).get(f"{need}/manifest.json") != self.manifest(need).digest:
                raise ArtifactError(_rebuilt(step, need), m.path)
        return m

    def breaks(self, step: str) -> list[str]:
        """What ties RUN/<step> to an input the run no longer holds: for each step it recorded
        as an input, a problem when that folder is gone, unusable or rebuilt since, and when
        its dataset is not the run's. Empty when every link holds (``sgrec info``'s check)."""
        m = self.manifest(step)
        problems = []
        for key, digest in m.data.get("inputs", {}).items():
            need, _, name = key.partition("/")
            if step == "data" or name != "manifest.json" or need in ("", step):
                continue  # data/'s inputs are raw files, not steps
            if not self.has(need):
                problems.append(f"its input {need}/ is gone; run `sgrec {producer(step)}` "
                                "again")
                continue
            try:
                now = self.manifest(need).digest
            except ArtifactError:
                problems.append(f"its input {need}/ is unusable (see {need})")
                continue
            if now != digest:
                problems.append(_rebuilt(step, need))
        theirs = m.dataset.get("fingerprint")
        if step != "data" and theirs and self.has("data"):
            try:
                ours = self.manifest("data").dataset.get("fingerprint")
            except ArtifactError:
                ours = None
            if ours and theirs != ours:
                problems.insert(0, f"built from a different dataset (fingerprint {theirs[:12]} "
                                   f"vs the run's {ours[:12]}); run `sgrec {producer(step)}` "
                                   "again on the current data")
        return problems

    def digests(self, *steps: str) -> dict[str, str]:
        """{"<step>/manifest.json": digest}: how a new step records what it consumed."""
        return {f"{s}/manifest.json": self.manifest(s).digest for s in steps}


def _rebuilt(step: str, need: str) -> str:
    return (f"built from another {need}/ folder than the run now holds ({need} was rebuilt "
            f"since); run `sgrec {producer(step)}` again")


def as_run(run: Run | Path | str) -> Run:
    """Accept a Run or a path (the Python API takes either)."""
    return run if isinstance(run, Run) else Run(run)


def load_data(run: Run | Path | str) -> PreparedData:
    """Open RUN/data for a later step, refusing a missing, unfinished or edited folder."""
    return as_run(run).data


def load_sids(run: Run | Path | str) -> SemanticIds:
    """Open RUN/sids for a later step; refuse SIDs built from other data or edited files."""
    return as_run(run).sids
