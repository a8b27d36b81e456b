"""Batched non-negative least squares for template fitting (E20 Appendix A, BCNZ2).

Each problem is the chi2 quadratic of one galaxy at one redshift for one template run,
    chi2(v) = f^T W f - 2 v.b + v^T G v,   v >= 0,
with G = A^T W A (T, T) and b = A^T W f (T,). Shapes: N problems of T templates.

Two solvers:
- ``multiplicative_updates``: Sha, Lin, Saul & Lee (2007), v <- v * max(b, 0) / (G v). Template
  fluxes and weights are non-negative, so G is elementwise non-negative and every update keeps v >= 0
  and lowers chi2. BCNZ2 ran ~1000 of them per problem. On our 10-template runs (8 similar continua +
  2 line templates) they converge slowly: on demo-catalogue problems, after 1000 updates from a
  clipped least-squares start the median chi2 was still 4-8 above the optimum, so they only serve as
  the BCNZ2-style option ``solver="mu"``.
- ``nnls``: exact. Warm-started from the positive set of a neighbouring redshift, block principal
  pivoting (Kim & Park 2011, ``active_set``) needs one or two batched Cholesky solves; cold starts
  (and the rare problems pivoting does not finish) use Lawson & Hanson (1974), whose iterates stay
  feasible, in about as many solves as there are positive templates.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOOR = 1e-3  # MU start: clipped coefficients restart at this fraction of the largest one
WARM_PIVOTS = 6  # block-pivoting solves before a warm-started problem falls back to Lawson-Hanson
# relative ridge on the diagonal: keeps collinear or all-zero templates solvable
RIDGE = {torch.float64: 1e-10, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def masked_solve(G: Tensor, b: Tensor, free: Tensor) -> Tensor:
    """(N, T) least-squares solution of G v = b on the ``free`` (N, T) variables, others 0.

    Batched Cholesky. Fixed variables are pinned by a diagonal penalty 1/RIDGE times the largest
    diagonal element (their coupling to the free ones is then ~RIDGE, below round-off) and a small
    relative ridge keeps collinear templates solvable; systems that still fail in float32 are redone
    in float64.
    """
    k = free.to(G.dtype)  # (N, T)
    scale = torch.diagonal(G, dim1=1, dim2=2).amax(1, keepdim=True).clamp_min(1e-30)  # (N, 1)
    Gm = G.clone()
    ridge = RIDGE[G.dtype]
    torch.diagonal(Gm, dim1=1, dim2=2).add_(scale * (ridge + (1 - k) / ridge))
    L, info = torch.linalg.cholesky_ex(Gm)  # (N, T, T)
    y = torch.linalg.solve_triangular(L, (b * k).unsqueeze(-1), upper=False)
    x = torch.linalg.solve_triangular(L.transpose(1, 2), y, upper=True).squeeze(-1) * k
    failed = (info != 0) | ~torch.isfinite(x).all(1)
    if G.dtype != torch.float64 and bool(failed.any()):
        f = torch.nonzero(failed).squeeze(1)
        x[f] = masked_solve(G[f].double(), b[f].double(), free[f]).to(x.dtype)
    return x


def chi2_value(G: Tensor, b: Tensor, fwf: Tensor, v: Tensor) -> Tensor:
    """(N,) chi2 = f^T W f - 2 v.b + v^T G v >= 0 for coefficients v (N, T), in the dtype of fwf (N,).

    A difference of large numbers: G and b come from float32 template products, so the value is
    exact only to ~1e-7 f^T W f (0.01 for a galaxy at S/N ~ 300 summed over its bands). Where the
    model fits almost exactly (chi2_min ~ 0, e.g. few bands) that round-off went below 0
    (-0.0097 seen); chi2 is a sum of squares, so it is clamped at 0."""
    G, b, v = G.to(fwf.dtype), b.to(fwf.dtype), v.to(fwf.dtype)
    gv = torch.bmm(G, v.unsqueeze(-1)).squeeze(-1)  # (N, T)
    return (fwf - 2.0 * (v * b).sum(-1) + (v * gv).sum(-1)).clamp_min(0.0)


def active_set(
    G: Tensor, b: Tensor, free: Tensor | None = None, max_iter: int = 50
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact NNLS by block principal pivoting (Kim & Park 2011, with their backup rule).

    G (N, T, T), b (N, T); ``free`` (N, T) is the starting guess of the positive set (default: all
    variables, i.e. the unconstrained solution). Returns the solution (N, T) >= 0, the final positive
    set (N, T) and a converged flag (N,). Problems leave the batch as they converge; the others
    return their last iterate clipped at 0 (use ``nnls``, which finishes them by Lawson-Hanson).
    Started cold it can cycle on near-collinear templates; warm-started it mostly needs 1-2 solves.
    """
    n, t = b.shape
    dev = b.device
    free = torch.ones_like(b, dtype=torch.bool) if free is None else free.clone()
    best = torch.full((n,), t + 1, dtype=torch.long, device=dev)
    backup = torch.full((n,), 3, dtype=torch.long, device=dev)
    x = torch.zeros_like(b)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    idx = torch.arange(n, device=dev)
    tol = 1e-9 if b.dtype == torch.float64 else 1e-5
    for _ in range(max_iter):
        if idx.numel() == 0:
            break
        whole_batch = idx.numel() == n
        Gi, bi = (G, b) if whole_batch else (G[idx], b[idx])
        fi = free[idx]
        xi = masked_solve(Gi, bi, fi)  # (n, T)
        yi = torch.bmm(Gi, xi.unsqueeze(-1)).squeeze(-1) - bi  # gradient (n, T)
        scale = (torch.diagonal(Gi, dim1=1, dim2=2) * xi.abs()).amax(1) + bi.abs().amax(1)
        xtol = tol * xi.abs().amax(1, keepdim=True)
        bad = torch.where(fi, xi < -xtol, yi < -tol * scale[:, None])  # KKT violations (n, T)
        nbad = bad.sum(1)
        ok = nbad == 0
        x[idx] = xi.clamp_min(0)
        done[idx[ok]] = True
        bi_best, bi_backup = best[idx], backup[idx]
        improve = nbad < bi_best
        whole = improve | (bi_backup > 0)
        best[idx] = torch.where(improve, nbad, bi_best)
        backup[idx] = torch.where(improve, torch.full_like(bi_backup, 3), bi_backup - 1)
        last = t - 1 - torch.flip(bad, [1]).long().argmax(1)  # largest violating index (n,)
        single = torch.nn.functional.one_hot(last, t).bool() & bad
        free[idx] = fi ^ torch.where(whole[:, None], bad, single)
        idx = idx[~ok]
    return x, x > 0, done


def nnls(G: Tensor, b: Tensor, free: Tensor | None = None) -> Tensor:
    """Exact NNLS solutions (N, T) of G (N, T, T), b (N, T): warm-started block principal
    pivoting from ``free`` (N, T) where given, Lawson-Hanson for cold starts and for the few
    problems pivoting has not finished in ``WARM_PIVOTS`` solves."""
    if free is None:
        return lawson_hanson(G, b)[0]
    x, _, done = active_set(G, b, free, WARM_PIVOTS)
    if not bool(done.all()):
        rest = torch.nonzero(~done).squeeze(1)
        x[rest] = lawson_hanson(G[rest], b[rest])[0]
    return x


def lawson_hanson(G: Tensor, b: Tensor, max_iter: int = 40) -> tuple[Tensor, Tensor, Tensor]:
    """NNLS by Lawson & Hanson (1974), vectorised: (N, T) solution, positive set and converged (N,).

    Starts from v = 0 and adds the variable of steepest descent one at a time, stepping back to
    feasibility when a solve goes negative; every iterate is feasible and lowers chi2, so a
    truncated run still gives an upper bound. One batched solve per step for the unfinished problems.
    """
    n, t = b.shape
    dev = b.device
    x = torch.zeros_like(b)
    free = torch.zeros_like(b, dtype=torch.bool)
    inner = torch.zeros(n, dtype=torch.bool, device=dev)  # stepping back after a negative solve
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    idx = torch.arange(n, device=dev)
    tol = 1e-9 if b.dtype == torch.float64 else 1e-5
    for _ in range(max_iter):
        if idx.numel() == 0:
            break
        Gi, bi, xi, fi, ii = G[idx], b[idx], x[idx], free[idx], inner[idx]
        grad = bi - torch.bmm(Gi, xi.unsqueeze(-1)).squeeze(-1)  # descent direction (n, T)
        scale = (torch.diagonal(Gi, dim1=1, dim2=2) * xi.abs()).amax(1) + bi.abs().amax(1)
        cand = torch.where(fi, torch.full_like(grad, -torch.inf), grad)
        best, j = cand.max(1)
        finished = ~ii & (best <= tol * scale)
        add = ~ii & ~finished
        fi = fi | (torch.nn.functional.one_hot(j, t).bool() & add[:, None])
        s = masked_solve(Gi, bi, fi)  # (n, T)
        neg = fi & (s <= tol * s.abs().amax(1, keepdim=True))
        ok = ~neg.any(1)
        ratio = torch.where(neg, xi / (xi - s).clamp_min(1e-300), torch.full_like(s, torch.inf))
        alpha = ratio.amin(1, keepdim=True).clamp(0, 1)  # (n, 1)
        step = torch.where(ok[:, None], s, xi + alpha * (s - xi)).clamp_min(0)
        fi = fi & (ok[:, None] | (step > tol * step.abs().amax(1, keepdim=True)))
        x[idx] = torch.where(finished[:, None], xi, step * fi)
        free[idx] = fi
        inner[idx] = ~ok & ~finished
        done[idx[finished]] = True
        idx = idx[~finished]
    return x, x > 0, done


def multiplicative_updates(G: Tensor, b: Tensor, v: Tensor, iterations: int) -> Tensor:
    """Sha et al. (2007) updates v <- v * b+ / (G v) for G (N, T, T) >= 0, b (N, T), v (N, T) > 0."""
    bp = b.clamp_min(0)
    for _ in range(iterations):
        gv = torch.bmm(G, v.unsqueeze(-1)).squeeze(-1)  # (N, T)
        v = v * bp / gv.clamp_min(1e-300)
    return v


def mu_nnls(G: Tensor, b: Tensor, iterations: int) -> Tensor:
    """BCNZ2-style NNLS (N, T): clipped least-squares start (floored so every template can come
    back), then ``iterations`` multiplicative updates."""
    v = masked_solve(G, b, torch.ones_like(b, dtype=torch.bool)).clamp_min(0)
    top = v.amax(1, keepdim=True)  # (N, 1)
    start = b.clamp_min(0) / torch.diagonal(G, dim1=1, dim2=2).clamp_min(1e-300)
    v = torch.where(top > 0, v.clamp_min(FLOOR * top), start)
    return multiplicative_updates(G, b, v, iterations)
