"""Generators and discriminators: the standard CNN (SN paper Table 3), the ResNets
(Tables 4 and 5) and an MLP for 2-D mixtures.

Every D is built the same way whatever the regularizer: plain Linear/Conv2d
layers plus NormSlots (identity unless the bn/ln baseline fills them). The
method under test is applied afterwards by `regularizer.attach(D)`, so D's
architecture differs across methods only by the method (docs/paper.md, "The
fairness rules": no hidden BatchNorm when SN is off).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry
from regularizers.normalization_layers import NormSlot


def _channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


# ---------------------------------------------------------------- standard CNN
def cnn_generator(z_dim: int, channels: int, size: int, width: float) -> nn.Module:
    """Table 3 G: dense Mg x Mg x 512, three deconv 4x4 s2 (BN, ReLU), conv 3x3, tanh."""
    mg, ch = size // 8, _channels(512, width)
    c2, c4, c8 = _channels(256, width), _channels(128, width), _channels(64, width)
    return nn.Sequential(
        nn.Linear(z_dim, mg * mg * ch), Reshape(ch, mg, mg), nn.BatchNorm2d(ch), nn.ReLU(),
        nn.ConvTranspose2d(ch, c2, 4, 2, 1), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.ConvTranspose2d(c2, c4, 4, 2, 1), nn.BatchNorm2d(c4), nn.ReLU(),
        nn.ConvTranspose2d(c4, c8, 4, 2, 1), nn.BatchNorm2d(c8), nn.ReLU(),
        nn.Conv2d(c8, channels, 3, 1, 1), nn.Tanh(),
    )


def cnn_discriminator(channels: int, size: int, width: float, slope: float) -> nn.Module:
    """Table 3 D: seven convs with LeakyReLU(0.1), then dense -> 1."""
    c64, c128, c256, c512 = (_channels(c, width) for c in (64, 128, 256, 512))
    plan = [  # (in, out, kernel, stride, padding)
        (channels, c64, 3, 1, 1), (c64, c64, 4, 2, 1),
        (c64, c128, 3, 1, 1), (c128, c128, 4, 2, 1),
        (c128, c256, 3, 1, 1), (c256, c256, 4, 2, 1),
        (c256, c512, 3, 1, 1),
    ]
    layers: dict[str, nn.Module] = {}
    for i, (cin, cout, k, s, p) in enumerate(plan, start=1):
        layers[f"conv{i}"] = nn.Conv2d(cin, cout, k, s, p)
        if i > 1:  # chainer-gan-lib puts no norm after D's first conv
            layers[f"norm{i}"] = NormSlot(cout, spatial=True)
        layers[f"act{i}"] = nn.LeakyReLU(slope)
    mg = size // 8
    layers["flatten"] = nn.Flatten()
    layers["dense"] = nn.Linear(mg * mg * c512, 1)
    return nn.Sequential(OrderedDict(layers))


# ---------------------------------------------------------------- ResNets
class GeneratorBlock(nn.Module):
    """Pre-activation up block: BN, ReLU, nearest unpool, conv3x3, BN, ReLU, conv3x3."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """Pre-activation block without BN: ReLU, conv3x3, ReLU, conv3x3, optional 2x2
    average pool. `first` is the input block (no activation on the raw image).
    The hidden width is the block's input width, as in the authors' sngan_projection
    Block (hidden_channels = in_channels); their OptimizedBlock (the first) maps
    in -> out in its first conv. On STL-10 this gives D 10.1M parameters, not 19.5M."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        hidden = cout if first else cin
        self.norm1 = nn.Identity() if first else NormSlot(cin, spatial=True)
        self.conv1 = nn.Conv2d(cin, hidden, 3, 1, 1)
        self.norm2 = NormSlot(hidden, spatial=True)
        self.conv2 = nn.Conv2d(hidden, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.norm1(x))
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        return h + self.skip(x)

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:  # sngan_projection's OptimizedBlock: pool, then the 1x1 conv
            return self.shortcut(F.avg_pool2d(x, 2) if self.down else x)
        if self.shortcut is not None:
            x = self.shortcut(x)
        return F.avg_pool2d(x, 2) if self.down else x


# Table 4 (32px) and Table 5 (48px): bottom size, G channels, D (channels, down) per block.
RESNET_LAYOUTS = {
    32: dict(bottom=4, g=[256, 256, 256, 256], d=[(128, True), (128, True), (128, False), (128, False)]),
    48: dict(bottom=6, g=[512, 256, 128, 64], d=[(64, True), (128, True), (256, True), (512, True), (1024, False)]),
}


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, channels: int, size: int, width: float):
        super().__init__()
        layout = RESNET_LAYOUTS[size]
        g = [_channels(c, width) for c in layout["g"]]
        b = layout["bottom"]
        self.head = nn.Sequential(nn.Linear(z_dim, b * b * g[0]), Reshape(g[0], b, b))
        self.blocks = nn.Sequential(*(GeneratorBlock(cin, cout) for cin, cout in zip(g[:-1], g[1:], strict=True)))
        self.tail = nn.Sequential(nn.BatchNorm2d(g[-1]), nn.ReLU(), nn.Conv2d(g[-1], channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.blocks(self.head(z)))


class ResNetDiscriminator(nn.Module):
    def __init__(self, channels: int, size: int, width: float):
        super().__init__()
        blocks, cin = [], channels
        for i, (c, down) in enumerate(RESNET_LAYOUTS[size]["d"]):
            cout = _channels(c, width)
            blocks.append(DiscriminatorBlock(cin, cout, down, first=(i == 0)))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.norm = NormSlot(cin, spatial=True)
        self.dense = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.blocks(x)))
        return self.dense(h.sum(dim=(2, 3)))  # global sum pooling (Tables 4, 5)


# ---------------------------------------------------------------- MLP for 2-D data
def mlp_generator(z_dim: int, dim: int, hidden: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    cin = z_dim
    for _ in range(depth):
        layers += [nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        cin = hidden
    return nn.Sequential(*layers, nn.Linear(cin, dim))


def mlp_discriminator(dim: int, hidden: int, depth: int, slope: float) -> nn.Module:
    layers: dict[str, nn.Module] = {}
    cin = dim
    for i in range(1, depth + 1):
        layers[f"linear{i}"] = nn.Linear(cin, hidden)
        if i > 1:
            layers[f"norm{i}"] = NormSlot(hidden, spatial=False)
        layers[f"act{i}"] = nn.LeakyReLU(slope)
        cin = hidden
    layers["dense"] = nn.Linear(cin, 1)
    return nn.Sequential(OrderedDict(layers))


# ---------------------------------------------------------------- building
INITS = ("normal", "xavier_uniform", "default")  # model.init; normal reads model.init_std


@torch.no_grad()
def initialize(module: nn.Module, init: str, std: float | None) -> None:
    """`std` is read by init=normal only (the models whose config has no init_std use another init)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if init == "normal":
                nn.init.normal_(m.weight, 0.0, std)
            elif init == "xavier_uniform":
                nn.init.xavier_uniform_(m.weight, gain=math.sqrt(2) if m.weight.dim() == 4 else 1.0)
            elif init != "default":
                raise ValueError(f"model.init={init!r} is not one of: {', '.join(INITS)}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class Model:
    """One architecture family: what data it takes and how (G, D) are built for a data shape.
    `size_problem(size)`: why an image size does not fit it (None: it fits), asked by the config
    check before any data is read."""
    name: str
    data: str   # "images" (C, H, W) | "points" (dim,)
    build: Callable[..., tuple[nn.Module, nn.Module]]  # (model_cfg, data_shape, z_dim) -> (G, D)
    size_problem: Callable[[int], str | None] = lambda size: None


def _build_cnn(m, shape, z_dim):
    return cnn_generator(z_dim, shape[0], shape[1], m.width), cnn_discriminator(shape[0], shape[1], m.width,
                                                                                m.leaky_slope)


def _build_resnet(m, shape, z_dim):
    return ResNetGenerator(z_dim, shape[0], shape[1], m.width), ResNetDiscriminator(shape[0], shape[1], m.width)


def _build_mlp(m, shape, z_dim):
    return (mlp_generator(z_dim, shape[0], m.hidden, m.depth),
            mlp_discriminator(shape[0], m.hidden, m.depth, m.leaky_slope))


MODELS: Registry[Model] = Registry("model")
MODELS.add(Model("cnn", "images", _build_cnn,
                 lambda size: None if size % 8 == 0 else "model=cnn needs an image size divisible by 8 (Mg = M/8)"))
MODELS.add(Model("resnet", "images", _build_resnet,
                 lambda size: None if size in RESNET_LAYOUTS else
                 f"model=resnet has layouts for image sizes {', '.join(map(str, RESNET_LAYOUTS))} only (Tables 4, 5)"))
MODELS.add(Model("mlp", "points", _build_mlp))
DATA_SHAPES = {"images": "images", "points": "2-D point data"}


def build_models(model_cfg, data_shape: tuple[int, ...], z_dim: int) -> tuple[nn.Module, nn.Module]:
    """(G, D) for the data shape: (C, H, W) images or (dim,) points."""
    model = MODELS[model_cfg.name]
    if (len(data_shape) == 3) != (model.data == "images"):
        fitting = ", ".join(m.name for m in MODELS.values() if m.data != model.data)
        raise ValueError(f"model={model.name} is for {DATA_SHAPES[model.data]}; this dataset has shape {data_shape}: "
                         f"use model={fitting}")
    if model.data == "images" and (why := model.size_problem(data_shape[1])) is not None:
        raise ValueError(f"{why}, got {data_shape[1]}")
    G, D = model.build(model_cfg, data_shape, z_dim)
    initialize(G, model_cfg.init, model_cfg.get("init_std"))
    initialize(D, model_cfg.init, model_cfg.get("init_std"))
    return G, D
