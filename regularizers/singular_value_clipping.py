"""Singular value clipping (Saito et al. 2017, TGAN): every k D updates, each weight
matrix (conv reshaped to out x in*kh*kw) becomes U min(S, 1) V^T.

No Python branch reads a GPU value (a weight that needs no clipping, or a diverged one,
is kept by torch.where), so the only wait on the GPU is the SVD's own: torch's CUDA SVD
checks its convergence on the host, once per layer every k D updates."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix, weight_layers


@torch.no_grad()
def clip_singular_values(weight: torch.Tensor, max_value: float) -> None:
    W = as_matrix(weight)
    finite = torch.isfinite(W).all()  # diverged: left as it is, for the trainer's divergence check
    U, S, Vh = torch.linalg.svd(torch.where(finite, W, 0.0), full_matrices=False)
    clip = finite & (S.max() > max_value)  # only a weight with a singular value above the bound changes
    weight.copy_(torch.where(clip, (U * S.clamp(max=max_value)) @ Vh, W).view_as(weight))


class SingularValueClipping(Regularizer):
    name = "svc"
    kind = "projection"
    compile_after_step = False  # SVD every `every` steps, counted in Python: nothing a graph would speed up

    options = {"every": Option(int, low=1), "max_singular_value": Option(float, low=0, low_open=True)}

    def __init__(self, every: int = 5, max_singular_value: float = 1.0):
        self.every = every
        self.max_singular_value = max_singular_value
        self.d_steps = 0  # D updates seen; checkpointed so resumes clip on the same steps

    def after_step(self, D: nn.Module) -> None:
        self.d_steps += 1
        if self.d_steps % self.every == 0:
            for _, layer in weight_layers(D):
                clip_singular_values(layer.weight, self.max_singular_value)

    def state_dict(self) -> dict:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict) -> None:
        self.d_steps = int(state["d_steps"])
