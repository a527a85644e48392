"""What one training step dispatches: ATen operations and FLOPs, counted eagerly around the
trainer's own d_step / g_step (docs/cost.md).

At small batch a GPU step is bound by launches, not arithmetic: each operation costs the
framework's dispatch and, unless it is a view, a kernel launch of a few microseconds, whatever
its size. So the operation count predicts a method's GPU overhead where CPU seconds (the CPU
does the arithmetic itself, which hides the launches) and FLOPs (nearly the same for every
method) cannot. Counts are exact and do not depend on the machine's load.
"""
from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


class CountOps(TorchDispatchMode):
    """ATen operations (by name; `views`: those that only make a view, launching no kernel) and
    FLOPs (torch's formulas: convs and matmuls, forward and backward) of what runs inside. Below
    autograd, so the backward's operations count too; a _foreach op over a list counts once, as it
    launches (on a GPU) one kernel per chunk of the list. torch's own FlopCounterMode cannot count
    a gradient penalty: its module tracker fails inside autograd.grad."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.views = 0
        self.flops = 0

    @property
    def total(self) -> int:
        return self.ops.total()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops[func._overloadpacket.__name__] += 1
        self.views += func.is_view
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def step_counts(trainer) -> dict:
    """Operations of one D step, one G step and one generator update (n_dis D steps + 1 G step),
    with the D step's by name, and the update's FLOPs. One untimed update first: the optimizers
    create their state on their first step, which later steps do not repeat."""
    trainer.train_one_update()
    n_dis = trainer.cfg.setting.n_dis
    d_steps = []
    for _ in range(n_dis):
        with CountOps() as d_step:
            trainer.d_step()
        d_steps.append(d_step)
    with CountOps() as g_step:
        trainer.g_step()
    d_total = sum(d.total for d in d_steps)
    return {
        "ops_per_d_step": d_total / n_dis,
        "ops_per_g_step": g_step.total,
        "ops_per_generator_update": d_total + g_step.total,
        "view_ops_per_d_step": sum(d.views for d in d_steps) / n_dis,
        "d_step_ops_by_name": dict(d_steps[-1].ops.most_common()),
        "flops_per_generator_update": sum(d.flops for d in d_steps) + g_step.flops,
    }

