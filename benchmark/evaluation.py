"""Evaluation under named protocols: Inception IS / FID / KID (torch-fidelity's
extractor and metric code), the same three in the feature space of the
project's Fashion-MNIST classifier, and mode statistics for 2-D mixtures.

A metric's name is its protocol (docs/evaluation.md: numbers from different
protocols never share a column):

    is<N>_<S>splits          Inception score of N generated samples in S splits (mean; `_std` beside it)
    fid<N>_<M> / fid<N>_train    FID of N generated vs M real training images (a fixed subset) / all of them
    kid<N>_<M> / kid<N>_train    KID likewise (mean; `_std` beside it)
    prc<N>_<M> / prc<N>_train    improved precision and recall (k = 3): `_precision`, `_recall`
    fmnist_is..., fmnist_fid..., fmnist_kid..., fmnist_prc...   the same in the Fashion-MNIST classifier's features
    points_prc...            precision and recall of 2-D points, the points being their own features
    mixture<N>               2-D mixtures: `_modes` covered, `_high_quality` share, `_kl` to uniform over modes

The grammar and the columns of each kind are one entry of benchmark.contract.METRIC_KINDS;
its compute function (`compute_<kind>`, below) is registered in COMPUTE under the kind's name.

N and M are integers, optionally with a k (5k = 5000). Evaluation latents come
from `eval.seed`, so every method and every evaluation sees the same z.
Real-data features and statistics are computed once and cached in
`eval.cache_root`, keyed by dataset, subset and extractor.
"""
from __future__ import annotations

import functools
import hashlib
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.checkpoint import load_failure
from benchmark.contract import metric_forms, parse_metric
from benchmark.data import mixture_modes
from benchmark.registry import Registry
from benchmark.results import write_atomic

INCEPTION = "inception-v3-compat"
PRC_NEIGHBORHOOD = 3  # Kynkaanniemi et al. 2019's k (torch-fidelity's default)


# Each metric kind's compute function, under the kind's name (benchmark.contract.METRIC_KINDS):
# `COMPUTE.add(function, name="spread")` beside `METRIC_KINDS.add(MetricKind(name="spread", ...))`.
COMPUTE: Registry = Registry("metric compute function", selected_by="the metric kind of that name")


class EvaluationSetupError(ValueError):
    """Bad evaluation input (a name, a count, a missing weights file), found before any computation."""


def _count(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)


@dataclass(frozen=True)
class Protocol:
    name: str
    kind: str           # a benchmark.contract.METRIC_KINDS name: is | fid | kid | prc | mixture
    space: str          # inception | fmnist | points
    num_fake: int
    real: int | None = None  # real training samples (None: all of them; unused by is / mixture)
    splits: int = 1

    @classmethod
    def parse(cls, name: str) -> Protocol:
        parsed = parse_metric(name)
        if parsed is None:
            raise EvaluationSetupError(f"unknown metric {name!r}; valid forms: "
                                       f"{metric_forms()} (e.g. is50k_10splits, "
                                       f"fid5k_10k, fid50k_train, fmnist_fid10k_train, prc10k_10k, mixture10k)")
        kind, g = parsed
        if kind.name not in COMPUTE:
            raise EvaluationSetupError(f"metric {name!r}: its kind {kind.name!r} has no compute function; register "
                                       f"one with benchmark.evaluation.COMPUTE.add(function, name={kind.name!r})")
        real = g.get("real")
        protocol = cls(name=name, kind=kind.name, space=g["space"], num_fake=_count(g["n"]),
                       real=None if real in (None, "train") else _count(real), splits=int(g.get("splits") or 1))
        if min(protocol.num_fake, protocol.splits, 1 if protocol.real is None else protocol.real) < 1:
            raise EvaluationSetupError(f"metric {name!r}: every count in its name must be >= 1")
        return protocol

    def compute(self):
        return COMPUTE[self.kind]


# ------------------------------------------------------------------ 2-D mixtures
def mixture_metrics(points: torch.Tensor, modes: torch.Tensor, std: float, covered_fraction: float) -> dict:
    """Mode statistics of the unrolled-GAN / VEEGAN evaluations.

    A sample is high quality when within 3 std of its nearest mode; a mode is
    covered when it holds at least `covered_fraction` of the high-quality
    samples a uniform spread would give it; `kl` is KL(mode histogram of the
    high-quality samples || uniform) in nats (0 = all modes equally).
    """
    distance, nearest = torch.cdist(points.double(), modes.double()).min(dim=1)
    good = distance <= 3 * std
    k = len(modes)
    counts = torch.bincount(nearest[good], minlength=k).double()
    n_good = int(good.sum())
    covered = int((counts >= covered_fraction * n_good / k).sum()) if n_good else 0
    p = counts / max(n_good, 1)
    kl = float((p[p > 0] * (p[p > 0] * k).log()).sum()) if n_good else None
    return {"modes": covered, "high_quality": n_good / len(points), "kl": kl}


# ------------------------------------------------------------------ the metrics (torch-fidelity's code)
def inception_score(logits: torch.Tensor, splits: int) -> tuple[float, float]:
    """Mean and std over `splits` consecutive chunks (the official code's 10 x 5,000), no shuffling:
    the evaluation latents are random already."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    score = isc_features_to_metric(logits, splits=splits, shuffle=False)
    return score["inception_score_mean"], score["inception_score_std"]


def fid_statistics(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean and covariance, as torch-fidelity computes them (mu float32, sigma float64)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics
    stats = fid_features_to_statistics(features.float())
    return {"mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}


def frechet_distance(features: torch.Tensor, reference: dict[str, torch.Tensor]) -> float:
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    mine = {k: v.numpy() for k, v in fid_statistics(features).items()}
    theirs = {"mu": reference["mu"].numpy().astype(mine["mu"].dtype), "sigma": reference["sigma"].numpy()}
    return fid_statistics_to_metric(mine, theirs, verbose=False)["frechet_inception_distance"]


def kernel_distance(features: torch.Tensor, real_features: torch.Tensor, subsets: int, subset_size: int,
                    seed: int) -> tuple[float, float]:
    """KID with torch-fidelity's default kernel (cubic polynomial, Binkowski et al. 2018)."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    score = kid_features_to_metric(features, real_features, kid_subsets=subsets, kid_subset_size=subset_size,
                                   rng_seed=seed, verbose=False)
    return score["kernel_inception_distance_mean"], score["kernel_inception_distance_std"]


def precision_recall(features: torch.Tensor, real_features: torch.Tensor) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), torch-fidelity's code: k-NN balls
    around each real (precision) or generated (recall) feature; batched (save_cpu_ram)."""
    from torch_fidelity.metric_prc import prc_features_to_metric
    score = prc_features_to_metric(features.float(), real_features.float(), prc_neighborhood=PRC_NEIGHBORHOOD,
                                   prc_batch_size=10000, save_cpu_ram=True, verbose=False)
    return score["precision"], score["recall"]


# ------------------------------------------------------------------ the registry's compute functions
# Each takes the evaluator, the protocol and the generated samples' features in the protocol's
# space (one pass serves every protocol of a space: each takes its first num_fake samples), and
# returns its columns (benchmark.contract.METRIC_KINDS), and is registered in COMPUTE below.
def compute_is(ev: Evaluator, p: Protocol, fake: dict, space: FeatureSpace) -> dict:
    mean, std = inception_score(fake[space.is_feature][:p.num_fake], p.splits)
    return {p.name: mean, f"{p.name}_std": std}


def compute_fid(ev: Evaluator, p: Protocol, fake: dict, space: FeatureSpace) -> dict:
    return {p.name: frechet_distance(fake[space.fid_feature][:p.num_fake], ev._real_reference(space, p))}


def compute_kid(ev: Evaluator, p: Protocol, fake: dict, space: FeatureSpace) -> dict:
    mean, std = kernel_distance(fake[space.fid_feature][:p.num_fake], ev._real_reference(space, p)["features"],
                                ev.cfg.kid_subsets, ev.cfg.kid_subset_size, ev.cfg.seed)
    return {p.name: mean, f"{p.name}_std": std}


def compute_prc(ev: Evaluator, p: Protocol, fake: dict, space: FeatureSpace) -> dict:
    precision, recall = precision_recall(fake[space.fid_feature][:p.num_fake],
                                         ev._real_reference(space, p)["features"])
    return {f"{p.name}_precision": precision, f"{p.name}_recall": recall}


def compute_mixture(ev: Evaluator, p: Protocol, fake: dict, space: FeatureSpace) -> dict:
    values = mixture_metrics(fake[space.fid_feature][:p.num_fake], mixture_modes(ev.dataset.name), ev.dataset.std,
                             ev.cfg.mixture_covered_fraction)
    return {f"{p.name}_{key}": value for key, value in values.items()}


COMPUTE.add(compute_is, name="is")
COMPUTE.add(compute_fid, name="fid")
COMPUTE.add(compute_kid, name="kid")
COMPUTE.add(compute_prc, name="prc")
COMPUTE.add(compute_mixture, name="mixture")


# ------------------------------------------------------------------ feature spaces
@dataclass
class FeatureSpace:
    name: str               # extractor + weights digest: part of every cache key, so new weights never reuse old statistics
    extractor: nn.Module | None   # None: the samples are the features (2-D points)
    is_feature: str         # classifier logits for IS
    fid_feature: str        # embedding for FID / KID

    @torch.no_grad()
    def features(self, batches: Iterable[torch.Tensor], total: int, desc: str, progress: bool) -> dict[str, torch.Tensor]:
        if self.extractor is None:  # 2-D points are their own features
            return {self.fid_feature: torch.cat([b.float().cpu() for b in batches])}
        out: dict[str, list[torch.Tensor]] = {self.is_feature: [], self.fid_feature: []}
        device = next(self.extractor.parameters()).device
        with tqdm(total=total, desc=desc, unit="image", leave=False, disable=not progress) as bar:
            for batch in batches:
                values = self.extractor(batch.to(device))
                for name, value in self.extractor.convert_features_tuple_to_dict(values).items():
                    out[name].append(value.float().cpu())
                bar.update(len(batch))
        return {k: torch.cat(v) for k, v in out.items()}


# sha256 of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (its name carries the first 8
# digits, which is all torch hub checks): the file the published Inception numbers come from.
OFFICIAL_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def inception_weights(configured: str | None) -> str:
    """The local file of torch-fidelity's Inception weights, fetched into torch hub's cache if need be,
    verified (verify_inception_weights) before torch-fidelity sees it."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    if configured:
        if not Path(configured).is_file():
            raise EvaluationSetupError(f"eval.inception_weights={configured}: no such file")
        return verify_inception_weights(Path(configured))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[-1]
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=False)
        except Exception as err:
            raise EvaluationSetupError(
                f"the Inception weights are missing: {cached} ({type(err).__name__}: {err}). "
                f"Run `make prefetch` on a machine with internet (it downloads {URL_INCEPTION_V3}), "
                f"or set eval.inception_weights=PATH") from err
    return verify_inception_weights(cached)


def verify_inception_weights(path: Path) -> str:
    """`path` if it is safe to hand to torch-fidelity, which unpickles it with weights_only=False
    (any code a crafted file holds would run). The official file passes by its digest; any other
    must load with weights_only=True as a dict of tensors (then the unrestricted load meets the
    same harmless content), and a note says its numbers are not the published protocol's."""
    if file_digest(str(path), length=64) == OFFICIAL_INCEPTION_SHA256:
        return str(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise EvaluationSetupError(
            f"Inception weights {path} refused: it is not the official file (sha256 differs) and it does not "
            f"load as plain tensors ({load_failure(err)}); torch-fidelity would unpickle it with "
            f"weights_only=False, which runs any code inside. Use `make prefetch`'s download") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationSetupError(f"Inception weights {path} refused: not a state dict of tensors "
                                   f"(found {type(state).__name__})")
    print(f"note: {path} is not the official Inception weights file (sha256 {OFFICIAL_INCEPTION_SHA256[:8]}...): "
          f"its IS / FID / KID are not comparable with published numbers", file=sys.stderr)
    return str(path)


def build_space(space: str, eval_cfg, device: torch.device, data_root: str, progress: bool) -> FeatureSpace:
    from torch_fidelity.utils import create_feature_extractor
    if space == "points":
        return FeatureSpace("points", None, "points", "points")
    if space == "inception":
        weights = inception_weights(eval_cfg.inception_weights)
        name, features = INCEPTION, ("logits_unbiased", "2048")
    elif space == "fmnist":
        from benchmark.fmnist_classifier import register_extractor
        weights = str(fmnist_classifier_path(eval_cfg))
        if not Path(weights).is_file():
            if eval_cfg.classifier:  # a path the user named must exist
                raise EvaluationSetupError(f"eval.classifier={eval_cfg.classifier}: no such file; "
                                           f"`make evaluator` trains one into {Path(eval_cfg.cache_root) / 'fmnist_classifier.pt'}")
            ensure_classifier(Path(weights), data_root, progress)
        name, features = register_extractor(weights), ("logits", "features")
    else:
        raise EvaluationSetupError(f"unknown feature space {space!r}")
    try:
        extractor = create_feature_extractor(name, list(features), cuda=False, verbose=False,
                                             feature_extractor_weights_path=weights).to(device)
    except (RuntimeError, KeyError) as err:  # a state dict of another architecture
        raise EvaluationSetupError(f"{space} weights {weights} do not fit the {space} extractor "
                                   f"({load_failure(err)})") from err
    return FeatureSpace(f"{space}-{file_digest(weights)}", extractor, *features)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str, length: int = 8) -> str:
    """sha256 of a file's content (the first `length` hex digits), read once per version of the file."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)[:length]


def ensure_classifier(path: Path, data_root: str, progress: bool) -> None:
    """Train the Fashion-MNIST classifier on first use (`make evaluator` does the same ahead of time)."""
    from benchmark.fmnist_classifier import load_labeled_fashion_mnist, train_classifier
    print(f"training the Fashion-MNIST classifier into {path} (first use; about two minutes on a CPU)",
          file=sys.stderr)
    root = Path(data_root).expanduser().resolve()
    record = train_classifier(*load_labeled_fashion_mnist(root, train=True),
                              *load_labeled_fashion_mnist(root, train=False), path, progress=progress)
    print(f"Fashion-MNIST classifier: test accuracy {record['test_accuracy']:.4f}", file=sys.stderr)


def fmnist_classifier_path(eval_cfg) -> Path:
    return Path(eval_cfg.classifier or Path(eval_cfg.cache_root) / "fmnist_classifier.pt").expanduser().resolve()


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 data or model-range ([-1, 1]) samples, 1 or 3 channels -> uint8 RGB, as torch-fidelity's
    extractors take them (a gray channel repeated)."""
    if images.dtype != torch.uint8:
        images = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def protocol_problems(protocols: list[Protocol], eval_cfg, dataset: str, points: bool, n_train: int) -> list[str]:
    """What is wrong with measuring `protocols` on a dataset (its name, whether its samples are
    points, its training-set size). The one check: the config check asks it with the dataset's
    known size before any data is read, the evaluator with the data it was given."""
    problems = []
    for p in protocols:
        if (p.space == "points") != points:
            problems.append(f"{p.name}: {'is for 2-D points' if p.space == 'points' else 'needs images'}, "
                            f"and dataset={dataset} has {'points' if points else 'images'}")
        if p.num_fake < 1:
            problems.append(f"{p.name}: needs at least one generated sample")
        if p.kind == "prc" and min(p.num_fake, p.real or n_train) <= PRC_NEIGHBORHOOD:
            problems.append(f"{p.name}: precision/recall need more than k={PRC_NEIGHBORHOOD} samples a side")
        if p.space == "fmnist" and dataset != "fashion_mnist":
            problems.append(f"{p.name}: the fmnist_ metrics are for dataset=fashion_mnist, not {dataset}")
        if p.real is not None and p.real > n_train:
            problems.append(f"{p.name}: asks for {p.real} real images, {dataset}'s training set has {n_train}")
        if p.kind == "is" and p.splits > p.num_fake:
            problems.append(f"{p.name}: {p.splits} splits of {p.num_fake} samples")
        if p.kind == "kid" and eval_cfg.kid_subset_size > min(p.num_fake, p.real or n_train):
            problems.append(f"{p.name}: eval.kid_subset_size={eval_cfg.kid_subset_size} exceeds the "
                            f"{min(p.num_fake, p.real or n_train)} samples on one side")
    return problems


# ------------------------------------------------------------------ the evaluator
class Evaluator:
    """Computes the configured metrics for a generator (or for held-out real data)."""

    def __init__(self, eval_cfg, dataset_cfg, train_data: torch.Tensor, device: torch.device,
                 data_root: str = "data", progress: bool = False):
        self.cfg = eval_cfg
        self.dataset = dataset_cfg
        self.train_data = train_data  # uint8 (N, C, H, W) images or float (N, 2) points, on any device
        self.device = device
        self.progress = progress
        self.protocols = [Protocol.parse(str(name)) for name in eval_cfg.metrics]
        self._check_counts()
        # feature extractors are loaded now, so that missing weights stop a run before training
        spaces = sorted({p.space for p in self.protocols})
        self.spaces = {s: build_space(s, eval_cfg, device, data_root, progress) for s in spaces}

    @property
    def identity(self) -> dict[str, str]:
        """The weights every metric is measured with, by feature space ("fmnist": "fmnist-<sha256[:8]>"):
        a retrained classifier (CPU training is not bit-reproducible) measures in another space, so
        numbers of two evaluators are never compared. 2-D points have no weights and no entry."""
        return {name: space.name for name, space in self.spaces.items() if space.extractor is not None}

    def _check_counts(self) -> None:
        problems = protocol_problems(self.protocols, self.cfg, self.dataset.name, self.train_data.dim() == 2,
                                     len(self.train_data))
        if problems:
            raise EvaluationSetupError("invalid evaluation:\n  " + "\n  ".join(problems))

    # -------------------------------------------------------------- samples
    def _latent_batches(self, n: int, z_dim: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.cfg.seed)  # the same z at every evaluation, for every method
        for start in range(0, n, self.cfg.batch_size):
            yield torch.randn(min(self.cfg.batch_size, n - start), z_dim, generator=g)

    def _generated(self, G: nn.Module, n: int, z_dim: int) -> Iterator[torch.Tensor]:
        for z in self._latent_batches(n, z_dim):
            yield G(z.to(self.device))

    def _slices(self, data: torch.Tensor, n: int) -> Iterator[torch.Tensor]:
        for start in range(0, n, self.cfg.batch_size):
            yield data[start:min(n, start + self.cfg.batch_size)]

    # -------------------------------------------------------------- real side
    def _real_subset(self, m: int | None) -> torch.Tensor:
        if m is None:
            return self.train_data
        order = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(0))
        return self.train_data[order[:m].to(self.train_data.device)]  # one fixed subset for every run

    def prefetch(self) -> list[str]:
        """Compute (or find) every real-data reference the configured metrics need; their names."""
        done = []
        for p in self.protocols:
            if p.kind in ("fid", "kid", "prc") and p.space != "points":
                self._real_reference(self.spaces[p.space], p)
                done.append(p.name)
        return done

    @functools.cached_property
    def data_digest(self) -> str:
        """A digest of the training set's content: two folders holding different data under one
        dataset name (a partial download, a stand-in) never share cached statistics."""
        return hashlib.sha256(self.train_data.cpu().contiguous().numpy().tobytes()).hexdigest()[:8]

    def _real_reference(self, space: FeatureSpace, p: Protocol) -> dict[str, torch.Tensor]:
        """Real features (KID) or FID statistics of the protocol's real set, cached on disk.
        One feature pass writes both, so FID and KID of one real set never extract it twice.
        2-D points are their own features: the fixed subset, nothing to cache."""
        if space.extractor is None:
            return {"features": self._real_subset(p.real).float().cpu()}
        subset = "train" if p.real is None else f"train{p.real}"
        stem = f"real-{self.dataset.name}{self.dataset.size}-{self.data_digest}-{subset}-{space.name}"
        paths = {what: Path(self.cfg.cache_root).expanduser() / f"{stem}-{what}.pt" for what in ("features", "fidstats")}
        wanted = "features" if p.kind in ("kid", "prc") else "fidstats"  # prc: k-NN radii need the features
        if paths[wanted].is_file():
            return torch.load(paths[wanted], map_location="cpu", weights_only=True)
        real = self._real_subset(p.real)
        features = space.features(map(to_uint8_rgb, self._slices(real, len(real))), len(real),
                                  f"real {subset} features (cached once)", self.progress)[space.fid_feature]
        items = {"features": {"features": features}, "fidstats": fid_statistics(features)}
        for what, item in items.items():
            write_atomic(paths[what], lambda tmp, item=item: torch.save(item, tmp))
        return items[wanted]

    # -------------------------------------------------------------- metrics
    @torch.no_grad()
    def evaluate(self, G: nn.Module | None = None, z_dim: int = 128, samples: torch.Tensor | None = None) -> dict:
        """Metrics of G's samples (G is put in eval mode and back), or of given `samples`
        (model range: [-1, 1] images or points) for the real-data reference."""
        if (G is None) == (samples is None):
            raise ValueError("evaluate needs exactly one of G or samples")
        was_training = G.training if G is not None else False
        if G is not None:
            G.eval()
        try:
            return self._evaluate(G, z_dim, samples)
        finally:
            if G is not None:
                G.train(was_training)

    def _evaluate(self, G, z_dim, samples) -> dict:
        results: dict[str, float | int | None] = {}

        def source(n: int) -> Iterator[torch.Tensor]:
            if samples is not None:
                if len(samples) < n:
                    raise EvaluationSetupError(f"{n} samples asked for, {len(samples)} given")
                return self._slices(samples, n)
            return self._generated(G, n, z_dim)

        for space_name in sorted({p.space for p in self.protocols}):
            wanted = [p for p in self.protocols if p.space == space_name]
            n = max(p.num_fake for p in wanted)
            space = self.spaces[space_name]
            transform = (lambda b: b) if space.extractor is None else to_uint8_rgb
            fake = space.features(map(transform, source(n)), n, f"{space_name} features", self.progress)
            for p in wanted:
                results.update(p.compute()(self, p, fake, space))
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in results.items()}

