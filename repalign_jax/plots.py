"""Figures (matplotlib, Agg backend, PNG files): the application layer's plots.

Public: the command-line tools and the experiments draw with these, and so can a
user (`from repalign_jax import plots`). Nothing below the application layer
imports matplotlib.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def pyplot():
    """`matplotlib.pyplot`, on the non-interactive Agg backend (files, no windows) unless pyplot
    was imported before (a notebook's or a session's own backend is left as it is)."""
    import matplotlib  # noqa: PLC0415 (slow to import; only where figures are drawn)

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (slow to import; only where figures are drawn)

    return plt


def colours(n: int):
    """`n` colours of the viridis map (dark to light), one per curve."""
    plt = pyplot()
    return plt.cm.viridis(np.linspace(0.0, 0.9, max(n, 1)))


def _check_lines(figure: str, ts, labels, **curves) -> None:
    """A one-line `ValueError` unless every curve array is `(len(labels), len(ts))`."""
    want = (len(labels), np.shape(ts)[-1])
    for name, v in curves.items():
        if v is not None and np.shape(v)[:2] != want:
            raise ValueError(f"{figure}: {name} has shape {np.shape(v)}, expected (labels, epochs) = {want}")


def plot_hyw(path: str | os.PathLike, ts, measured, theory, labels, title="") -> None:
    """Measured (solid) against theory (dashed) `h`, `y`, `w`, one colour per label (Figure 2).

    `measured`, `theory`: tuples `(h, y, w)` of arrays `(n_lines, T)`, one line per label
    (else `ValueError`).
    """
    for part, (meas, th) in zip("hyw", zip(measured, theory, strict=True)):
        _check_lines("plot_hyw", ts, labels, **{f"measured {part}": meas, f"theory {part}": th})
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    palette = colours(len(labels))
    for ax, name, meas, th in zip(axes, ("h = ||dh||^2", "y = ||dyh||^2", "w"), measured, theory):
        for k, lab in enumerate(labels):
            ax.plot(ts, meas[k], color=palette[k], lw=1.6, label=lab)
            ax.plot(ts, th[k], color=palette[k], lw=1.2, ls="--")
        ax.set(title=name, xlabel="epoch")
    axes[0].legend(fontsize=8, title="solid: network, dashed: theory", title_fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss(path: str | os.PathLike, ts, measured, theory, labels, plateaus=None, title="") -> None:
    """Loss curves, measured (solid) against theory (dashed), log scale (Figure 3).

    `measured`, `theory` (or `None`): `(n_lines, T)`, one line per label (else `ValueError`);
    `plateaus`: one epoch (or NaN) per label, marked with a dotted line.
    """
    _check_lines("plot_loss", ts, labels, measured=measured, theory=theory)
    if plateaus is not None and len(plateaus) != len(labels):
        raise ValueError(f"plot_loss: {len(plateaus)} plateaus for {len(labels)} labels")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    palette = colours(len(labels))
    for k, lab in enumerate(labels):
        ax.plot(ts, measured[k], color=palette[k], lw=1.6, label=lab)
        if theory is not None:
            ax.plot(ts, theory[k], color=palette[k], lw=1.2, ls="--")
        if plateaus is not None and np.isfinite(plateaus[k]):
            ax.axvline(plateaus[k], color=palette[k], lw=0.8, ls=":")
    ax.set(
        yscale="log", xlabel="epoch", ylabel="training loss", title=title or "loss: network (solid), theory (dashed)"
    )
    positive = np.asarray(measured, float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size:  # float32 round-off floors below this are noise, not dynamics
        ax.set_ylim(bottom=max(np.percentile(positive, 1) / 3, positive.max() * 1e-12))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_vs_gain(path: str | os.PathLike, gains, plateau, eta_enc, eta_dec, tau) -> None:
    """Plateau length and fitted rates against the initial-weight gain (one point per run)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(gains, plateau, "o")
    axes[0].set(xlabel="gain", ylabel="plateau (epochs)", title="representation-learning plateau")
    axes[1].plot(gains, eta_enc, "o", label="eta_enc")
    axes[1].plot(gains, eta_dec, "s", label="eta_dec")
    axes[1].set(xlabel="gain", ylabel="per epoch", yscale="log", title="fitted effective rates")
    axes[1].legend()
    axes[2].plot(gains, tau, "o")
    axes[2].set(xlabel="gain", ylabel="epochs", title="tau (output mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_predicted_vs_measured(
    path: str | os.PathLike, predicted, measured, colour=None, label="gain", title="final h: measured vs predicted"
) -> None:
    """Scatter of measured against predicted values with the identity line (Figure 5)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    sc = ax.scatter(predicted, measured, s=22, **({} if colour is None else {"c": colour, "cmap": "viridis"}))
    ok = np.isfinite(predicted) & np.isfinite(measured)
    if ok.any():
        lo, hi = min(predicted[ok].min(), measured[ok].min()), max(predicted[ok].max(), measured[ok].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    if colour is not None:
        fig.colorbar(sc, ax=ax, label=label)
    ax.set(xlabel="predicted (theory)", ylabel="measured (network)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
