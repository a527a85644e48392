"""The SN paper's facts that the analysis compares with, said once (docs/paper.md tells their story).

Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018. The claims
check (analysis/claims.py), the tables (analysis/figures.py) and the report read this table;
nothing else spells a paper number, a protocol, the aggressive settings or a claim's threshold.
The optimizer settings themselves (Table 1) are the run's configuration: conf/setting/<name>.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------ Table 2 and its protocol
# The paper's numbers hold for its own experiment only: its protocol, full width, 100K generator
# updates and an unmodified Table 1 setting (appendix B.1; Table 2's caption).
PAPER_BUDGET = 100_000
PAPER_WIDTH = 1.0
INCEPTION_SCORE_PROTOCOL = "is50k_10splits"   # 10 splits of 5,000 samples (the official code)
FID_PROTOCOL = "fid5k_10k"                    # 5,000 generated against 10,000 real


@dataclass(frozen=True)
class Table2Row:
    """One row of the paper's Table 2: the method's best setting, ns = the standard loss."""
    dataset: str
    model: str
    loss: str
    regularizer: str
    inception_score: float
    fid: float

    def value(self, metric: str) -> float | None:
        return {INCEPTION_SCORE_PROTOCOL: self.inception_score, FID_PROTOCOL: self.fid}.get(metric)


TABLE_2 = (
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="wc", inception_score=6.41, fid=42.6),
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="gangp", inception_score=6.93, fid=37.7),
    Table2Row(dataset="cifar10", model="cnn", loss="wgan", regularizer="wgangp", inception_score=6.68, fid=40.2),
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="bn", inception_score=6.27, fid=56.3),
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="ln", inception_score=7.19, fid=33.9),
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="wn", inception_score=6.84, fid=34.7),
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="ortho", inception_score=7.40, fid=29.0),
    Table2Row(dataset="cifar10", model="cnn", loss="ns", regularizer="sn", inception_score=7.42, fid=29.3),
    Table2Row(dataset="cifar10", model="cnn", loss="hinge", regularizer="sn", inception_score=7.58, fid=25.5),
    Table2Row(dataset="cifar10", model="resnet", loss="hinge", regularizer="ortho", inception_score=7.92, fid=23.8),
    Table2Row(dataset="cifar10", model="resnet", loss="hinge", regularizer="sn", inception_score=8.22, fid=21.7),
    Table2Row(dataset="stl10", model="cnn", loss="ns", regularizer="wc", inception_score=7.57, fid=64.2),
    Table2Row(dataset="stl10", model="cnn", loss="wgan", regularizer="wgangp", inception_score=8.42, fid=55.1),
    Table2Row(dataset="stl10", model="cnn", loss="ns", regularizer="ln", inception_score=7.61, fid=75.6),
    Table2Row(dataset="stl10", model="cnn", loss="ns", regularizer="wn", inception_score=7.16, fid=73.4),
    Table2Row(dataset="stl10", model="cnn", loss="ns", regularizer="ortho", inception_score=8.56, fid=46.7),
    Table2Row(dataset="stl10", model="cnn", loss="ns", regularizer="sn", inception_score=8.28, fid=53.1),
    Table2Row(dataset="stl10", model="resnet", loss="hinge", regularizer="ortho", inception_score=8.72, fid=42.4),
    Table2Row(dataset="stl10", model="resnet", loss="hinge", regularizer="sn", inception_score=9.10, fid=40.1),
)
PAPER_PROTOCOLS = (INCEPTION_SCORE_PROTOCOL, FID_PROTOCOL)


def paper_value(row, metric: str) -> float | None:
    """The paper's Table 2 number for a summary row (analysis.compare), only where the run is the
    paper's experiment: anything else is another experiment and gets no paper number."""
    if metric not in PAPER_PROTOCOLS or row.setting is None or row.setting != row.setting_name:
        return None
    if row.iterations != PAPER_BUDGET or (row.width is not None and row.width != PAPER_WIDTH):
        return None
    for entry in TABLE_2:
        if (entry.dataset, entry.model, entry.loss, entry.regularizer) == (row.dataset, row.model, row.loss,
                                                                              row.regularizer):
            return entry.value(metric)
    return None


# ------------------------------------------------------------------ the claims and their thresholds
AGGRESSIVE_SETTINGS = ("D", "E", "F")   # lr 1e-3 (Figures 1-2: where WGAN-GP and WN degrade)
GENTLE_SETTING_FOR_SIGMA = "C"          # Figure 9 plots SN's layers under setting C
ONE_SEED_TOLERANCE = 0.10    # with one seed (no interval), "worse" means worse by more than 10% of the mean
SIGMA_BAND = (1.0, 1.05)     # Figure 9: "within 1-1.05"; the logged value is the exact largest singular
                             # value of the weight D uses, which one power iteration can only leave above 1
SIGMA_TOLERANCE = 1e-3       # float rounding of an exact SVD of a normalized weight, below the band's floor
SN_OVER_WN_MAX = 1.25        # Figure 10: SN at "110-120%" of WN's time
WGANGP_OVER_SN_MIN = 1.3     # Figure 10: WGAN-GP "far" costlier than SN
GN_BOUND = 1.0               # Wu et al. 2021: |f_hat| <= 1 and f_hat piecewise 1-Lipschitz
GN_GRADIENT_TOLERANCE = 1e-3 # float rounding of a gradient norm that is 1 by construction


@dataclass(frozen=True)
class ClaimText:
    """A claim a reproduction can check: where it is made, what it says, and the test that judges it
    (`cases`: a test per reading where the claim has several, e.g. Figures 1-2's absolute and relative)."""
    label: str
    source: str
    statement: str
    test: str = ""
    cases: tuple[tuple[str, str], ...] = ()

    def test_of(self, case: str) -> str:
        return dict(self.cases).get(case, self.test)


FIGURES_1_2 = ClaimText(
    label="Figures 1-2", source="SN paper",
    statement="SN stays good under the aggressive settings D, E, F; WN and WGAN-GP degrade there",
    cases=(("absolute", "each method's D/E/F interval vs its own best setting's (overlap = stays good; one seed: "
                         "within 10%): SN never degrades, WN and WGAN-GP each do at least once"),
           ("relative", "per context, SN's worst aggressive setting against WN's worst and WGAN-GP's worst: each of "
                        "them worse than SN beyond the intervals")))
FIGURE_3 = ClaimText(
    label="Figure 3", source="SN paper",
    statement="WC and WN concentrate D's spectrum on few components; SN keeps it broad",
    test="mean normalized effective rank of D's layers: SN above WC and WN")
FIGURE_9 = ClaimText(
    label="Figure 9", source="SN paper",
    statement=f"SN layers' spectral norms stay within 1-1.05 during training (setting {GENTLE_SETTING_FOR_SIGMA})",
    test=f"every logged sigma_max of SN runs under {GENTLE_SETTING_FOR_SIGMA} in [{SIGMA_BAND[0]}, {SIGMA_BAND[1]}] "
         f"(up to {SIGMA_TOLERANCE} of rounding), for each power-iteration schedule")
FIGURE_10 = ClaimText(
    label="Figure 10", source="SN paper",
    statement="SN costs about 110-120% of WN, far less than WGAN-GP",
    test=f"sn/wn <= {SN_OVER_WN_MAX} and wgangp/sn >= {WGANGP_OVER_SN_MIN}")
FIGURE_11 = ClaimText(
    label="Figure 11", source="SN paper",
    statement="with setting D's Adam, WN degrades as n_dis grows, SN does not",
    test="highest n_dis vs lowest: WN worse beyond the intervals, SN not")
TABLE_7 = ClaimText(
    label="Table 7", source="SN paper",
    statement="WGAN-GP with Frobenius normalization collapses early",
    test="fn+wgangp's best worse than wgangp's beyond the intervals")
GN_BOUNDED = ClaimText(
    label="GN bound", source="Wu et al. 2021 (gradient normalization)",
    statement="the normalized discriminator f_hat is bounded by 1 and piecewise 1-Lipschitz",
    test=f"every evaluation of every gn run: max |f_hat| on its diagnostic samples <= {GN_BOUND} and the largest "
         f"measured input-gradient norm <= {GN_BOUND} (+{GN_GRADIENT_TOLERANCE})")
