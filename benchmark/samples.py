"""Sample pictures: an image grid, or for 2-D data a scatter of generated over real points."""
from __future__ import annotations

from pathlib import Path

import torch

from benchmark.results import write_atomic


def save_samples(path: Path, fake: torch.Tensor, reference: torch.Tensor | None = None) -> None:
    if fake.dim() == 4:
        from torchvision.utils import save_image
        grid = (fake.clamp(-1, 1) + 1) / 2
        write_atomic(path, lambda tmp: save_image(grid, tmp, nrow=8, padding=2, format="png"))
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.7", label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=4, c="C3", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    plt.close(fig)
