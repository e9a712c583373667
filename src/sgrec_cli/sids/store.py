"""The RUN/sids artifact read back for later steps: item SIDs, codebook sizes, embeddings."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..artifacts import Manifest

STEP = "sids"


@dataclass
class SemanticIds:
    """A loaded RUN/sids folder, checked against the run's current data."""

    manifest: Manifest
    codes: np.ndarray  # (N, L') int64, row i = item index i
    codebook_sizes: list[int]

    def embeddings(self) -> np.ndarray:
        return np.load(self.manifest.path.parent / "embeddings.npy", allow_pickle=False)


def open_sids(m: Manifest) -> SemanticIds:
    """The SIDs of a checked RUN/sids manifest (``rundir.Run.sids`` does the checking)."""
    folder = m.path.parent
    codes = np.load(folder / "sids.npy", allow_pickle=False)
    sizes = json.loads((folder / "sids.json").read_text(encoding="utf-8"))["codebook_sizes"]
    return SemanticIds(manifest=m, codes=codes, codebook_sizes=sizes)

