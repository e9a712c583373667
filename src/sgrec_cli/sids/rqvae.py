"""RQ-VAE: an MLP auto-encoder whose latent is quantised by L residual codebooks.

z = enc(x); r_0 = z; for level l: c_l = argmin_k ||r_{l-1} - e_{l,k}||, q_l = e_{l,c_l},
r_l = r_{l-1} - q_l. z_q = sum_l q_l, passed to the decoder with the straight-through
estimator z + sg(z_q - z). Loss = ||x - dec(z_q)||^2
      + sum_l ( ||sg(r_{l-1}) - q_l||^2 + beta * ||r_{l-1} - sg(q_l)||^2 ).
Codebooks start from FAISS k-means on each level's residuals of the initial encoder; a code
unused for a whole epoch is restarted on a random item's residual at that level (dead-code
restart), which is what keeps the first level from collapsing onto a few codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .dedup import collision_rate
from .kmeans import kmeans
from .stats import relative_reconstruction_error


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.SiLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], latent_dim: int, levels: int, k: int,
                 beta: float = 0.25, dropout: float = 0.0):
        super().__init__()
        self.encoder = _mlp([in_dim, *hidden, latent_dim], dropout)
        self.decoder = _mlp([latent_dim, *reversed(hidden), in_dim], dropout)
        self.codebooks = nn.Parameter(torch.zeros(levels, k, latent_dim))  # (L, K, d)
        self.beta = beta

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor]:
        """Return (z_q, codes (B, L), codebook+commitment loss, residuals in (L, B, d))."""
        r = z
        q_sum = torch.zeros_like(z)
        codes, residuals = [], []
        loss = z.new_zeros(())
        for book in self.codebooks:  # book: (K, d)
            residuals.append(r)
            d = torch.cdist(r.detach(), book.detach())  # (B, K)
            c = d.argmin(dim=1)
            q = book[c]  # (B, d)
            loss = loss + ((r.detach() - q) ** 2).sum(-1).mean() \
                + self.beta * ((r - q.detach()) ** 2).sum(-1).mean()
            q_sum = q_sum + q
            r = r - q.detach()
            codes.append(c)
        z_q = z + (q_sum - z).detach()  # straight-through to the encoder
        # the codebook gradient reaches q through the codebook loss above
        return z_q, torch.stack(codes, 1), loss, torch.stack(residuals)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        z_q, codes, q_loss, _ = self.quantize(z)
        x_hat = self.decoder(z_q)
        loss = ((x - x_hat) ** 2).sum(-1).mean() + q_loss
        return loss, codes, x_hat

    @torch.no_grad()
    def encode_all(self, x: torch.Tensor, batch: int = 4096) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
        """Codes (N, L), reconstructions (N, D_in), per-level residuals (L, N, d); eval mode."""
        was = self.training
        self.eval()
        codes, recon, res = [], [], []
        for i in range(0, len(x), batch):
            z = self.encoder(x[i:i + batch])
            z_q, c, _, r = self.quantize(z)
            codes.append(c)
            recon.append(self.decoder(z_q))
            res.append(r)
        self.train(was)
        return (torch.cat(codes).cpu().numpy(), torch.cat(recon).cpu().numpy(),
                torch.cat(res, dim=1).cpu().numpy())


@torch.no_grad()
def init_codebooks(model: RQVAE, x: torch.Tensor, *, seed: int, gpu: bool) -> None:
    """FAISS k-means on the residuals of each level, level by level."""
    r = model.encoder(x).cpu().numpy()
    for level in range(model.codebooks.shape[0]):
        res = kmeans(r, model.codebooks.shape[1], seed=seed + level, gpu=gpu)
        model.codebooks[level].copy_(torch.from_numpy(res.centroids))
        r = r - res.centroids[res.assign]


@torch.no_grad()
def restart_dead_codes(model: RQVAE, residuals: np.ndarray, codes: np.ndarray,
                       gen: torch.Generator) -> int:
    """Move every unused code onto the residual of a random item at its level; return count."""
    n_levels, k = model.codebooks.shape[:2]
    restarted = 0
    for level in range(n_levels):
        used = np.bincount(codes[:, level], minlength=k)
        dead = np.flatnonzero(used == 0)
        if len(dead) == 0:
            continue
        pick = torch.randint(0, residuals.shape[1], (len(dead),), generator=gen)
        new = torch.from_numpy(residuals[level][pick.numpy()])
        model.codebooks[level, torch.from_numpy(dead)] = new.to(model.codebooks.dtype)
        restarted += len(dead)
    return restarted


def selection_key(collision: float, rel_error: float, target: float) -> tuple[int, float]:
    """Order states: any meeting the collision target beats any that does not; then by the
    reconstruction error (meeting it) or by the collision rate (not meeting it)."""
    return (0, rel_error) if collision <= target else (1, collision)


@dataclass
class RQVAETrainResult:
    model: RQVAE
    codes: np.ndarray  # (N, L) of the kept (best) state
    reconstruction: np.ndarray  # (N, D_in)
    last_residual_in: np.ndarray  # (N, d): what the last level quantised (for reassign)
    history: list[dict]
    best_step: int
    steps_run: int
    batch_size: int  # the batch used (at most an eighth of the catalogue)


MIN_STEPS_PER_PASS = 8


def pass_batch(n_items: int, batch_size: int) -> int:
    """The batch size used: ``batch_size``, but small enough that a pass over the catalogue
    takes at least 8 steps (a 200-item catalogue would otherwise get one step per pass)."""
    return max(1, min(batch_size, math.ceil(n_items / MIN_STEPS_PER_PASS)))


@dataclass
class _Best:
    key: tuple[int, float] | None = None
    state: dict | None = None
    step: int = 0
    stale: int = 0


def _evaluate(model: RQVAE, codes: np.ndarray, recon: np.ndarray, x_np: np.ndarray, step: int,
              loss: float, restarted: int, best: _Best, target: float) -> dict:
    """A log row of the current state (its ``encode_all`` codes and reconstruction); it becomes
    ``best`` when it beats it (selection_key)."""
    rel = relative_reconstruction_error(x_np, recon)
    row = {"step": step, "loss": loss, "collision_rate": collision_rate(codes),
           "relative_reconstruction_error": rel, "restarted_codes": restarted,
           "level1_used": int(len(np.unique(codes[:, 0])))}
    key = selection_key(row["collision_rate"], rel, target)
    if best.key is None or key < best.key:
        best.key, best.step, best.stale = key, step, 0
        best.state = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    else:
        best.stale += 1
    return row


def train_rqvae(x_np: np.ndarray, *, levels: int, k: int, hidden: list[int], latent_dim: int,
                steps: int, batch_size: int, lr: float, beta: float, seed: int,
                target_collision_rate: float = 0.15, eval_every: int = 50, patience: int = 8,
                device: str = "cpu", faiss_gpu: bool = False,
                on_step: Callable[[int, dict | None], None] | None = None) -> RQVAETrainResult:
    """Train for ``steps`` optimisation steps, evaluating every ``eval_every`` steps, and keep
    the best evaluated state.

    Best = the lowest reconstruction error among states whose raw collision rate is at most
    ``target_collision_rate``; while no state meets it, the lowest collision rate. (Collisions
    rise as the latent grows more faithful to near-duplicate items, so both are watched.)
    Training stops after ``patience`` evaluations without a better state. Dead codes are
    restarted after each pass over the catalogue (``pass_batch`` sets the batch size).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32)).to(device)
    model = RQVAE(x.shape[1], hidden, latent_dim, levels, k, beta=beta).to(device)
    init_codebooks(model, x, seed=seed, gpu=faiss_gpu)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    n, batch = len(x), pass_batch(len(x), batch_size)
    history: list[dict] = []
    best = _Best()
    step, total, seen, restarted = 0, 0.0, 0, 0
    while step < steps and best.stale < patience:
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, batch):
            loss, _, _ = model(x[perm[i:i + batch]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total += loss.item() * min(batch, n - i)
            seen += min(batch, n - i)
            row, encoded = None, None
            if step % eval_every == 0 or step == steps:
                encoded = model.encode_all(x)  # (codes, reconstruction, residuals)
                row = _evaluate(model, encoded[0], encoded[1], x_np, step, total / seen,
                                restarted, best, target_collision_rate)
                history.append(row)
                total, seen, restarted = 0.0, 0, 0
            if on_step:
                on_step(step, row)
            if step >= steps or best.stale >= patience:
                break
        else:  # a whole pass: move unused codes onto random residuals
            codes, _, residuals = encoded or model.encode_all(x)  # an evaluation's, if it ran
            restarted += restart_dead_codes(model, residuals, codes, gen)
    assert best.state is not None
    model.load_state_dict(best.state)
    codes, recon, residuals = model.encode_all(x)
    return RQVAETrainResult(model, codes, recon, residuals[-1], history, best.step, step, batch)
