"""Several processes under ``torchrun`` (torch.distributed DDP): no home-made distribution.

``torchrun --nproc_per_node N -m sgrec_cli.cli train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; ``setup`` then joins the process group (NCCL on GPUs, gloo on CPUs) and gives
each process its device. Without those variables everything is a single process (world 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name}={raw!r} must be an integer (set by torchrun)") from None


def setup(device: str) -> World:
    """Join the torchrun process group when there is one; ``device`` is auto, cpu or cuda."""
    size = _env_int("WORLD_SIZE", 1)
    resolved = resolve_device(device)
    if size <= 1:
        return World(0, 1, resolved)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if resolved == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(local)
        resolved = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.startswith("cuda") else "gloo")
    return World(rank, size, resolved)


def main_process() -> bool:
    """True unless this is a non-zero rank under torchrun (which should stay quiet)."""
    return _env_int("RANK", 0) == 0


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(world: World, row: dict, sums: tuple[str, ...] = ()) -> dict:
    """A per-process log row averaged over processes (``sums``: added instead). None marks a
    value undefined in a process; it is left out of the mean (None if undefined everywhere).
    Every process must pass the same keys."""
    if not world.distributed:
        return row
    keys = [k for k, v in row.items() if v is None or isinstance(v, (int, float))]
    vals = [0.0 if row[k] is None else float(row[k]) for k in keys]
    have = [0.0 if row[k] is None else 1.0 for k in keys]
    t = torch.tensor(vals + have, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    n = len(keys)
    out = dict(row)
    for i, k in enumerate(keys):
        total, count = float(t[i]), float(t[n + i])
        if count == 0:
            out[k] = None
        elif k in sums:
            out[k] = int(round(total)) if isinstance(row[k], int) else total
        else:
            out[k] = total / count
    return out
