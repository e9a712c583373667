"""RUN/sasrec read back: the trained SASRec baseline, checked against the run's data."""

from __future__ import annotations

from ..rundir import Run


def load_sasrec(run: Run):
    """RUN/sasrec, checked against the run's data."""
    import json

    from safetensors.torch import load_file

    from .config import SASRecConfig
    from .sasrec import SASRec

    m = run.step("sasrec", needs=("data",))
    folder = m.path.parent
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    n_items = meta.pop("n_items")
    model = SASRec(n_items, SASRecConfig(**meta))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return model
