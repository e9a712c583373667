"""Checkpoints and exact resume, shared by SFT and A2PO: training-state folders replaced in one
rename (model, AdamW state split into safetensors + JSON, random states, step state), the checks
that a checkpoint may be resumed, and the training log rewritten with it. Never pickle."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .artifacts import swap_into_place, temp_folder


def write_folder_atomically(final: Path, fill: Callable[[Path], None]) -> None:
    """``fill`` a temporary sibling of ``final``, then swap it in: ``final`` is always whole."""
    tmp = temp_folder(final.parent, f".{final.name}.tmp-")
    try:
        fill(tmp)
        swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def optimizer_to_flat(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able parts."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    """Inverse of ``optimizer_to_flat``; ``load_state_dict`` moves tensors to the params."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------- training state and resume

CKPT_FORMAT = 1
_UNUSABLE = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def rng_tensors(generators: dict[str, torch.Generator], device: torch.device) -> dict:
    """torch's global RNG (dropout), the CUDA one on a GPU, and the named generators."""
    out = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    out.update({name: g.get_state() for name, g in generators.items()})
    return out


def save_training_state(folder: Path, *, model, optimizer, rng: dict[str, torch.Tensor],
                        state: dict, extra: Callable[[Path], None] | None = None) -> None:
    """Replace ``folder`` in one rename by the model, the AdamW state, the random states,
    whatever ``extra`` writes, and ``state.json`` (written last) — all safetensors/JSON."""
    from safetensors.torch import save_file, save_model

    from .artifacts import atomic_write_json

    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, meta = optimizer_to_flat(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "optimizer.json", meta)
        save_file(rng, str(tmp / "rng.safetensors"))
        if extra is not None:
            extra(tmp)
        atomic_write_json(tmp / "state.json", {**state, "format_version": CKPT_FORMAT})

    write_folder_atomically(folder, fill)


def read_state(folder: Path) -> dict:
    """``state.json`` of a checkpoint, or one clear error when it is unusable."""
    import json

    from .errors import ArtifactError

    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        version = state.get("format_version") if isinstance(state, dict) else state
        if version != CKPT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {version!r}")
    except _UNUSABLE as e:
        raise ArtifactError(f"unusable checkpoint ({e}); train again without --resume",
                            folder) from None
    return state


def check_resumable(state: dict, *, config: dict, may_change: set[str],
                    inputs: dict[str, str] | None = None, folder: Path) -> None:
    """Refuse to resume a checkpoint made from other artifacts or with other options (those
    in ``may_change`` excepted): resuming must continue the same computation."""
    from .errors import ArtifactError, ConfigError

    if inputs is not None:
        stale = sorted(k.split("/")[0] for k, v in inputs.items()
                       if state.get("inputs", {}).get(k) != v)
        if stale:
            raise ArtifactError(f"the checkpoint was made from other {', '.join(stale)} "
                                "artifacts; train again without --resume", folder)
    saved = state.get("config", {})
    changed = sorted(k for k, v in config.items() if k not in may_change and saved.get(k) != v)
    if changed:
        raise ConfigError(f"cannot resume: options {changed} differ from the interrupted "
                          "run; use the same values or train without --resume")


def load_training_state(folder: Path, *, model, optimizer, generators: dict[str, torch.Generator],
                        device: torch.device,
                        extra: Callable[[Path], Any] | None = None) -> Any:
    """Load what ``save_training_state`` wrote into model, optimizer and random states;
    returns ``extra(folder)``. Any damage is one 'unusable checkpoint' error."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    from .errors import ArtifactError

    try:
        load_model(model, str(folder / "model.safetensors"), strict=True, device=str(device))
        meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
        optimizer.load_state_dict(optimizer_from_flat(
            load_file(str(folder / "optimizer.safetensors")), meta))
        rng = load_file(str(folder / "rng.safetensors"))
        result = extra(folder) if extra is not None else None
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
        for name, g in generators.items():
            g.set_state(rng[name])
    except (*_UNUSABLE, SafetensorError) as e:
        raise ArtifactError(f"unusable checkpoint ({e}); train again without --resume",
                            folder) from None
    return result


def write_log(path: Path, rows: list[dict]) -> None:
    """Rewrite a (small) training log whole, atomically, so it always matches the checkpoint."""
    import json

    from .artifacts import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
