"""Device choice: `--device auto` takes a GPU when torch sees one."""

from __future__ import annotations

from .errors import ConfigError


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no GPU; use --device auto")
    return name
