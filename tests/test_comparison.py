"""The comparison's rules (analysis.compare, analysis.claims) on sweeps with known numbers."""
import json
import math
from pathlib import Path

import matplotlib.image
import pytest

from analysis import figures as F
from analysis import report
from analysis.claims import HOLDS, UNKNOWN, check_claims
from analysis.collect import collect
from analysis.compare import Comparison, bootstrap_ci


def config(reg="sn", setting="D", n_dis=5, loss="ns", width=0.5, seed=0, iterations=10000, lr=1e-3):
    return {"dataset": {"name": "fashion_mnist"}, "model": {"name": "cnn", "width": width}, "loss": {"name": loss},
            "regularizer": {"name": reg}, "seed": seed, "batch_size": 64, "budget": {"iterations": iterations,
                                                                                    "log_every": 100},
            "setting": {"name": setting, "lr": lr, "beta1": 0.5, "beta2": 0.9, "n_dis": n_dis}, "device": "auto"}


def write(sweep: Path, name: str, cfg: dict, status="completed", metrics=None, sigma=None, spectra=None,
          seconds=1.0, evaluator=None) -> Path:
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(json.dumps(cfg))
    metrics = metrics or {}
    result = {"schema": 1, "status": status, "iteration": 100, "iterations_planned": 100, "config": cfg,
              "metrics": metrics, "seconds_per_generator_update": seconds, "final": {}, "spectral_norms": {},
              "error": "RuntimeError: boom" if status == "failed" else None}
    if evaluator is not None:
        result["evaluator"] = evaluator
    (run / "result.json").write_text(json.dumps(result))
    rows = [{"schema": 1, "iteration": i, "seconds": i / 10.0, "d_loss": 1.0, "g_loss": 1.0,
             "sigma_max": sigma or {"conv1": 1.0}} for i in (50, 100)]
    if metrics:
        rows.append({"schema": 1, "iteration": 50, "seconds": 5.0, "metrics": {
            k: (v * 1.1 if v is not None else None) for k, v in metrics.items()}})
        rows.append({"schema": 1, "iteration": 100, "seconds": 10.0, "metrics": metrics})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "spectra.json").write_text(json.dumps({"schema": 1, "iteration": 100, "singular_values": spectra or {
        "conv1": [1.0, 0.9, 0.8], "dense": [1.0]}}))
    return run


IS = "fmnist_is10k_10splits"


@pytest.fixture
def ndis_loss_sweep(tmp_path) -> Path:
    """Two n_dis values x two losses x three seeds of sn and wn under setting D; one diverged seed."""
    sweep = tmp_path / "sweep"
    for reg, base in (("sn", 6.0), ("wn", 5.0)):
        for loss, shift in (("ns", 0.0), ("hinge", 0.5)):
            for n_dis in (1, 5):
                for seed in range(3):
                    drop = 2.0 if (reg == "wn" and n_dis == 5) else 0.0
                    status = "diverged" if (reg, loss, n_dis, seed) == ("sn", "ns", 5, 2) else "completed"
                    value = base + shift - drop + 0.1 * seed
                    write(sweep, f"{reg}-{loss}-{n_dis}-{seed}", config(reg, n_dis=n_dis, loss=loss, seed=seed),
                          status, {IS: value if status == "completed" else None, f"{IS}_std": 0.05})
    return sweep


def test_configurations_are_never_pooled_across_n_dis_width_or_loss(tmp_path):
    sweep = tmp_path / "sweep"
    for n_dis in (1, 5):
        for width in (0.25, 0.5):
            for loss in ("ns", "hinge"):
                for seed in (0, 1):
                    write(sweep, f"{n_dis}-{width}-{loss}-{seed}", config(n_dis=n_dis, width=width, loss=loss,
                                                                         seed=seed),
                          metrics={IS: n_dis + 10 * width + (loss == "hinge") + 0.01 * seed})
    comparison = Comparison(*collect([sweep]))
    assert comparison.labels.context_keys == ["model.width"]
    summary = comparison.summary(IS)
    assert len(summary) == 2 * 2 * 2 and (summary.n == 2).all()  # one row per configuration, its two seeds
    row = summary.set_index(["context", "method", "setting"]).loc[("model.width=0.5", "sn [hinge]", "D n_dis=5")]
    assert row["mean"] == pytest.approx(5 + 5 + 1 + 0.005)
    best = F.best_setting_table(comparison, IS)
    assert set(zip(best.context, best.method, best.setting, strict=True)) == {
        (f"model.width={w}", f"sn [{loss}]", "D n_dis=5") for w in (0.25, 0.5) for loss in ("ns", "hinge")}


def test_runs_measured_with_two_classifiers_are_never_pooled(tmp_path):
    # a retrained classifier is another feature space: its FID / IS are other numbers
    sweep = tmp_path / "sweep"
    write(sweep, "old-0", config(seed=0), metrics={IS: 6.0})  # a record from before evaluators were written
    write(sweep, "a-1", config(seed=1), metrics={IS: 7.0}, evaluator={"fmnist": "fmnist-aaaaaaaa"})
    write(sweep, "a-2", config(seed=2), metrics={IS: 7.2}, evaluator={"fmnist": "fmnist-aaaaaaaa"})
    write(sweep, "b-1", config(seed=1), metrics={IS: 3.0}, evaluator={"fmnist": "fmnist-bbbbbbbb"})
    comparison = Comparison(*collect([sweep]))
    assert comparison.labels.context_keys == ["evaluator.fmnist"] and comparison.duplicates.empty
    summary = comparison.summary(IS).set_index("context")
    assert summary.loc["evaluator.fmnist=fmnist-aaaaaaaa", "n"] == 2
    assert summary.loc["evaluator.fmnist=fmnist-aaaaaaaa", "mean"] == pytest.approx(7.1)
    assert summary.loc["evaluator.fmnist=fmnist-bbbbbbbb", "n"] == 1
    assert summary.loc["evaluator.fmnist=None", "mean"] == 6.0
    # where one classifier measured every run, every caption names it
    one = Comparison(*collect([sweep / "a-1", sweep / "a-2"]))
    assert "evaluator.fmnist=fmnist-aaaaaaaa" in one.caption()


def test_a_run_not_yet_evaluated_joins_its_measured_peers(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write(sweep, f"a-{seed}", config(seed=seed), metrics={IS: 7.0}, evaluator={"fmnist": "fmnist-aaaaaaaa"})
    (write(sweep, "a-2", config(seed=2)) / "result.json").unlink()  # started, nothing measured yet
    comparison = Comparison(*collect([sweep]))
    assert comparison.labels.context_keys == [] and comparison.runs.config_id.nunique() == 1
    assert comparison.summary(IS).iloc[0][["seeds", "unfinished", "n"]].tolist() == [3, 1, 2]


def test_a_setting_where_two_of_three_seeds_diverged_is_not_chosen(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, (status, value) in enumerate([("completed", 9.0), ("diverged", None), ("failed", None)]):
        write(sweep, f"C-{seed}", config(setting="C", lr=2e-4, seed=seed), status, {IS: value} if value else {})
    for seed in range(3):
        write(sweep, f"A-{seed}", config(setting="A", lr=1e-4, seed=seed), metrics={IS: 6.0 + 0.1 * seed})
    comparison = Comparison(*collect([sweep]))
    best = comparison.best_settings(IS).iloc[0]
    assert best.setting == "A" and best.n == 3
    at_c = comparison.summary(IS).set_index("setting").loc["C"]
    assert (at_c.seeds, at_c.completed, at_c.diverged, at_c.failed) == (3, 1, 1, 1)
    assert at_c["mean"] == pytest.approx((9.0 + 1.0 + 1.0) / 3)  # IS's worst possible value is 1
    # survivor bias, as the old analysis had it: the one survivor would crown C
    assert Comparison(*collect([sweep]), failed="exclude").best_settings(IS).iloc[0].setting == "C"


def test_a_one_seed_setting_is_not_crowned_over_one_with_all_its_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(3):
        write(sweep, f"A-{seed}", config(setting="A", lr=1e-4, seed=seed), metrics={IS: 6.0 + 0.1 * seed})
    write(sweep, "C-0", config(setting="C", lr=2e-4, seed=0), metrics={IS: 8.0})  # a partly run grid
    best = Comparison(*collect([sweep])).best_settings(IS).iloc[0]
    assert (best.setting, best.n) == ("A", 3)
    write(sweep, "C-1", config(setting="C", lr=2e-4, seed=1), metrics={IS: 7.5})
    write(sweep, "C-2", config(setting="C", lr=2e-4, seed=2), metrics={IS: 7.0})
    assert Comparison(*collect([sweep])).best_settings(IS).iloc[0].setting == "C"


def test_a_third_seed_in_one_setting_does_not_hide_the_settings_with_two(tmp_path):
    """The budget test adds seed 2 setting by setting: meanwhile D's two seeds still compete with F's three."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write(sweep, f"D-{seed}", config(setting="D", lr=1e-3, seed=seed), metrics={IS: 5.5 + 0.1 * seed})
    for seed in range(3):
        write(sweep, f"F-{seed}", config(setting="F", lr=1e-3, seed=seed), metrics={IS: 3.0 + 0.1 * seed})
    comparison = Comparison(*collect([sweep]))
    best, worst = comparison.best_settings(IS).iloc[0], comparison.worst_settings(IS).iloc[0]
    assert (best.setting, best.n, worst.setting, worst.n) == ("D", 2, "F", 3)


def test_a_run_without_good_samples_counts_as_the_worst_kl_not_as_missing(tmp_path):
    sweep = tmp_path / "sweep"
    kl, modes = "mixture10k_kl", "mixture10k_modes"
    ring = {"dataset": {"name": "ring8"}, "model": {"name": "mlp"}}
    for seed, value in enumerate([0.1, 0.3, None]):
        write(sweep, f"sn-{seed}", config(seed=seed) | ring, metrics={kl: value, modes: 8})
    for seed in range(3):
        write(sweep, f"none-{seed}", config("none", seed=seed) | ring, metrics={kl: 1.5 + 0.1 * seed, modes: 2})
    table = Comparison(*collect([sweep])).summary(kl).set_index("method")
    assert table.loc["sn", "no_value"] == 1 and table.loc["sn", "n"] == 3
    assert table.loc["sn", "mean"] == pytest.approx((0.1 + 0.3 + 1.7) / 3)  # the worst KL any run reached


def test_the_same_configuration_typed_two_ways_is_one_run(tmp_path):
    sweep = tmp_path / "sweep"
    write(sweep, "regularizer=sn", config(seed=0), metrics={IS: 6.0})
    write(sweep, "regularizer=sn,seed=0,setting=D", config(seed=0) | {"device": "cpu"}, metrics={IS: 6.0})
    write(sweep, "regularizer=sn,seed=1", config(seed=1), metrics={IS: 7.0})
    comparison = Comparison(*collect([sweep]))
    assert len(comparison.runs) == 2 and len(comparison.duplicates) == 1
    assert comparison.summary(IS).iloc[0].n == 2


def test_one_seed_shows_the_split_std_labelled_and_no_interval(tmp_path):
    sweep = tmp_path / "sweep"
    write(sweep, "one", config(), metrics={IS: 6.0, f"{IS}_std": 0.2})
    comparison = Comparison(*collect([sweep]))
    markdown = F.table_markdown(F.best_setting_table(comparison, IS), IS, comparison)
    assert "6 +- 0.2 (split std)" in markdown


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    values = [5.0, 6.0, 7.0, 6.5, 5.5]
    low, high = bootstrap_ci(values)
    assert low < 6.0 < high and (low, high) == bootstrap_ci(values)
    assert all(math.isnan(x) for x in bootstrap_ci([1.0]))  # one seed has no interval


def test_select_best_scores_the_best_evaluation_during_training(ndis_loss_sweep):
    runs, evals = collect([ndis_loss_sweep])
    final = Comparison(runs, evals).summary(IS)
    best = Comparison(runs, evals, select="best").summary(IS)
    # the synthetic runs scored 10% higher at iteration 50 than at the end
    row = ("model.width=0.5", "sn [ns]", "D n_dis=1")
    assert final.set_index(["context", "method", "setting"]).shape[0] == 8
    f, b = (t.set_index(["method", "setting"]).loc[row[1:]] for t in (final, best))
    assert b["mean"] == pytest.approx(f["mean"] * 1.1)


def test_report_on_the_ndis_loss_sweep_keeps_configurations_apart_and_checks_claims(ndis_loss_sweep, tmp_path):
    out = tmp_path / "figures"
    path = report.main([str(ndis_loss_sweep), "--out", str(out)])
    text = path.read_text()
    table = (out / f"table2_{IS}.md").read_text()
    for method in ("sn [ns]", "sn [hinge]", "wn [ns]", "wn [hinge]"):
        assert f"| {method} |" in table
    assert "| sn [ns] | D n_dis=1 |" in table  # its n_dis=5 setting lost a seed to divergence
    assert "0 / 0 / 0" in table and "[" in table  # counts and intervals
    summary = Comparison(*collect([ndis_loss_sweep])).summary(IS).set_index(["method", "setting"])
    assert summary.loc[("sn [ns]", "D n_dis=5"), "diverged"] == 1
    assert summary.loc[("sn [hinge]", "D n_dis=5"), "diverged"] == 0
    for name in (f"settings_{IS}", f"curves_{IS}", f"ndis_{IS}", "spectra_final", "sigma_max_training"):
        assert matplotlib.image.imread(out / f"{name}.png").size > 1000, name
    assert "## Paper claims" in text
    claims = (out / "claims.md").read_text()
    for where in ("Figures 1-2 (absolute)", "Figures 1-2 (relative)", "Figure 3", "Figure 9", "Figure 10",
                  "Figure 11", "Table 7", "GN bound"):
        assert f"| {where} |" in claims  # Figure 9 without a case: no SN run under C, so no schedule to name
    assert "budget=" not in text.split("## Paper claims")[0].split("Split by:")[1].split("\n")[0]


def test_claims_give_verdicts_with_their_numbers(ndis_loss_sweep):
    verdicts = check_claims(Comparison(*collect([ndis_loss_sweep]))).set_index("where")
    # WN drops by 2 IS at n_dis 5 in both losses; SN's ns config lost a seed (IS 1 by the policy), which
    # widens its interval to overlap its n_dis=1 interval: not a degradation beyond the uncertainty
    assert verdicts.loc["Figure 11", "verdict"] == HOLDS
    assert "wn [ns] n_dis 1: 5.1 [5, 5.2] (n=3) -> 5: 3.1" in verdicts.loc["Figure 11", "numbers"]
    assert verdicts.loc["Figures 1-2 (absolute)", "verdict"] == UNKNOWN  # no wgangp runs
    assert verdicts.loc["Figures 1-2 (relative)", "verdict"] == UNKNOWN
    assert verdicts.loc["Table 7", "verdict"] == UNKNOWN
    assert verdicts.loc["Figure 10", "verdict"] == UNKNOWN


def test_ndis_claim_holds_when_only_wn_degrades(tmp_path):
    sweep = tmp_path / "sweep"
    for reg in ("sn", "wn"):
        for n_dis in (1, 5, 20):
            for seed in range(3):
                value = 7.0 + 0.1 * seed - (0.2 * n_dis if reg == "wn" else 0.0)
                write(sweep, f"{reg}-{n_dis}-{seed}", config(reg, n_dis=n_dis, seed=seed), metrics={IS: value},
                      sigma={"conv1": 1.01, "dense": 0.99})
    verdicts = check_claims(Comparison(*collect([sweep]))).set_index("where")
    assert verdicts.loc["Figure 11", "verdict"] == HOLDS
    assert verdicts.loc["Figure 3", "verdict"] == UNKNOWN  # no wc runs


def test_contexts_run_in_numeric_order(tmp_path):
    """A 10K context beside a 5K one comes second in every table and figure (not by string order)."""
    sweep = tmp_path / "sweep"
    for iterations in (10000, 5000):
        write(sweep, f"sn-{iterations}", config(iterations=iterations), metrics={IS: 6.0})
    assert Comparison(*collect([sweep])).contexts() == ["budget.iterations=5000", "budget.iterations=10000"]


def test_figure_3_reads_table_1_settings_not_a_figure_11_context(tmp_path):
    """A reference with Figure 11's runs beside it: SN's best run there (setting D at n_dis 20) is not
    the paper's Figure 3, so its spectrum, however narrow, leaves the verdict and its numbers alone."""
    sweep = tmp_path / "sweep"
    broad, narrow = [1.0, 0.9, 0.8], [1.0, 0.01, 0.01]
    for reg in ("sn", "wn", "wc"):
        write(sweep, f"{reg}-D", config(reg, iterations=5000), metrics={IS: 6.0},
              spectra={"conv1": broad if reg == "sn" else narrow, "dense": [1.0]})
    for reg in ("sn", "wn"):
        for n_dis in (1, 20):
            write(sweep, f"{reg}-D-{n_dis}", config(reg, n_dis=n_dis), metrics={IS: 7.0 if n_dis == 20 else 6.0},
                  spectra={"conv1": narrow, "dense": [1.0]})
    verdict = check_claims(Comparison(*collect([sweep]))).set_index("where").loc["Figure 3"]
    assert verdict["verdict"] == HOLDS
    assert "sn 0.969" in verdict["numbers"], verdict["numbers"]  # the 5K context's SN alone


def test_figures_1_2_measure_each_setting_against_the_tables_best_not_a_lucky_single_seed(tmp_path):
    sweep = tmp_path / "sweep"
    for reg in ("sn", "wn", "wgangp"):
        for setting, lr in (("C", 2e-4), ("D", 1e-3)):
            drop = 3.0 if (reg != "sn" and setting == "D") else 0.0
            for seed in range(3):
                write(sweep, f"{reg}-{setting}-{seed}", config(reg, setting=setting, lr=lr, seed=seed),
                      metrics={IS: 6.0 + 0.1 * seed - drop})
    # a partly run grid: SN's first seed under E is far better than any full setting
    write(sweep, "sn-E-0", config("sn", setting="E", seed=0), metrics={IS: 9.0})
    verdicts = check_claims(Comparison(*collect([sweep]))).set_index("where")
    verdict = verdicts.loc["Figures 1-2 (absolute)"]
    # against the one-seed E (the old rule), SN's three seeds under D would "degrade" by a third
    assert "sn D: 6.1 [6, 6.2] (n=3) vs best C:" in verdict["numbers"]
    assert verdict["verdict"] == HOLDS
    # relative: SN's worst aggressive setting (D: 6.1, the one-seed E is better) against WN's and WGAN-GP's (3.1)
    relative = verdicts.loc["Figures 1-2 (relative)"]
    assert relative["verdict"] == HOLDS
    assert "worst aggressive: sn D 6.1 [6, 6.2] (n=3) vs wn D 3.1 [3, 3.2] (n=3): wn worse" in relative["numbers"]


def test_figures_1_2_pool_the_contexts_and_name_each_one_in_the_numbers(tmp_path):
    """A 2-D reference has ring8 and grid25: SN degrading on one of them is SN degrading."""
    sweep = tmp_path / "sweep"
    for dataset in ("ring8", "grid25"):
        for reg in ("sn", "wn", "wgangp"):
            for setting, lr in (("C", 2e-4), ("D", 1e-3)):
                degrades = setting == "D" and (reg != "sn" or dataset == "grid25")
                for seed in range(3):
                    cfg = config(reg, setting=setting, lr=lr, seed=seed)
                    cfg["dataset"]["name"] = dataset
                    write(sweep, f"{dataset}-{reg}-{setting}-{seed}", cfg,
                          metrics={IS: 6.0 + 0.1 * seed - (3.0 if degrades else 0.0)})
    verdict = check_claims(Comparison(*collect([sweep]))).set_index("where").loc["Figures 1-2 (absolute)"]
    assert "[dataset.name=grid25] sn D: 3.1" in verdict["numbers"]
    assert "[dataset.name=ring8] sn D: 6.1" in verdict["numbers"]
    assert verdict["verdict"] != HOLDS


def test_a_method_keeps_its_color_in_every_panel(tmp_path):
    """ring8 has every method and grid25 a few: SN is one color in both panels of a figure."""
    sweep = tmp_path / "sweep"
    for dataset, regs in (("ring8", ("none", "sn", "wn", "wc")), ("grid25", ("sn", "wc"))):
        for reg in regs:
            cfg = config(reg)
            cfg["dataset"]["name"] = dataset
            write(sweep, f"{dataset}-{reg}", cfg, metrics={IS: 5.0})
    comparison = Comparison(*collect([sweep]))
    fig = F.settings_bars(comparison, IS)
    colors = [{t.get_text(): h.get_facecolor() for h, t in zip(ax.get_legend().legend_handles,
                                                                  ax.get_legend().get_texts(), strict=True)}
              for ax in fig.axes]
    shared = [m for m in colors[0] if m in colors[1]]
    assert len(shared) == 2 and all(colors[0][m] == colors[1][m] for m in shared)
    assert len({colors[1][m] for m in colors[1]}) == 4  # ring8's four methods, four colors


def test_figure_9_has_a_verdict_for_each_power_iteration_schedule(tmp_path):
    """The paper's 1-1.05 may belong to the schedule: per_update's sigma reaches 1.1 here, per_forward's
    stays at 1.01; each schedule gets its own verdict, and a sigma below 1 (impossible for the exact
    largest singular value of a weight divided by a lower estimate) is outside the band too."""
    sweep = tmp_path / "sweep"
    for schedule, sigma in (("per_update", 1.1), ("per_forward", 1.01)):
        for seed in range(2):
            cfg = config("sn", setting="C", n_dis=1, lr=2e-4, seed=seed)
            cfg["regularizer"]["power_iteration"] = schedule
            write(sweep, f"{schedule}-{seed}", cfg, metrics={IS: 6.0}, sigma={"conv1": sigma, "dense": 1.0})
    verdicts = check_claims(Comparison(*collect([sweep]))).set_index("where")
    assert verdicts.loc["Figure 9 (per_update)", "verdict"] == "does not hold"
    assert "max 1.1, 4 above 1.05" in verdicts.loc["Figure 9 (per_update)", "numbers"]
    assert verdicts.loc["Figure 9 (per_forward)", "verdict"] == HOLDS


def test_the_schedule_section_shows_settings_where_both_schedules_ran(tmp_path):
    """SN's Figure 11 runs (one schedule, another context) have nothing to compare: no row."""
    sweep = tmp_path / "sweep"
    for schedule in ("per_update", "per_forward"):
        cfg = config("sn", setting="C", n_dis=1, lr=2e-4)
        cfg["regularizer"]["power_iteration"] = schedule
        write(sweep, f"C-{schedule}", cfg, metrics={IS: 6.0})
    for n_dis in (1, 20):
        cfg = config("sn", n_dis=n_dis, iterations=20000)
        cfg["regularizer"]["power_iteration"] = "per_update"
        write(sweep, f"D-{n_dis}", cfg, metrics={IS: 6.0})
    rows = [line for line in report.schedule_section(Comparison(*collect([sweep])), IS) if line.startswith("| budget")]
    assert [line.split(" | ")[1:3] for line in rows] == [["C", "sn (power_iteration=per_forward)"],
                                                          ["C", "sn (power_iteration=per_update)"]], rows


def test_scoring_at_an_update_extends_shorter_runs_with_longer_ones(tmp_path):
    """--at N: a run trained past N is scored by its evaluation at N and is then the same configuration
    as a run that stopped there; a run that diverged after N was fine at N; a shorter one is left out."""
    sweep = tmp_path / "sweep"

    def run(name, iterations, value_at_50, status="completed", diverged_at=None, seed=0):
        path = write(sweep, name, config("wn", iterations=iterations, seed=seed), status,
                     metrics={IS: None if status == "diverged" else 9.0})
        result = json.loads((path / "result.json").read_text())
        result.update(iterations_planned=iterations, diverged_at=diverged_at)
        (path / "result.json").write_text(json.dumps(result))
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        for row in rows:
            if row.get("iteration") == 50 and "metrics" in row:
                row["metrics"][IS] = value_at_50
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    run("short-0", 50, 4.0)
    run("long-1", 100, 5.0, seed=1)
    run("long-2", 100, 6.0, status="diverged", diverged_at=80, seed=2)
    run("shorter-3", 40, 1.0, seed=3)
    at_50 = Comparison(*collect([sweep]), at=50)
    assert at_50.labels.context_keys == [] and len(at_50.left_out) == 1
    row = at_50.summary(IS).iloc[0]
    assert (row.n, row.completed, row.diverged) == (3, 3, 0)
    assert row["mean"] == pytest.approx(5.0)
    final = Comparison(*collect([sweep]))
    assert final.labels.context_keys == ["budget.iterations"]  # at the end the budgets are two experiments


def test_the_budget_section_tells_intervals_apart_only_over_two_seeds_or_more(tmp_path):
    """`write`'s runs score 10% higher at update 50 than at their end (100): over two seeds the
    intervals are disjoint; one seed has no interval over seeds, whatever its split std."""
    sweep = tmp_path / "sweep"
    for seed, value in enumerate((9.0, 9.2)):
        write(sweep, f"wn-{seed}", config("wn", iterations=100, seed=seed), metrics={IS: value})
    write(sweep, "sn-0", config("sn", iterations=100), metrics={IS: 9.0, IS + "_std": 0.01})
    text = report.make_report([sweep], tmp_path / "out", at=50).read_text()
    section = text.split("## At 50 and at the end")[1].split("\n## ")[0]
    assert "| wn | D | 10 [9.9, 10.1] | 9.1 [9, 9.2] | yes |" in section
    assert "| sn | D | 9.9 +- 0.011 (split std) | 9 +- 0.01 (split std) | - (one seed) |" in section
    embeddable = (tmp_path / "out" / "budget.md").read_text()
    assert embeddable.startswith("The runs trained past generator update 50") and embeddable.strip() in section
    report.make_report([sweep], tmp_path / "final")
    assert not (tmp_path / "final" / "budget.md").exists()  # scored at the end: no earlier update to show


def test_pictures_from_past_the_scored_update_say_so(tmp_path):
    """A record keeps only its last spectra and samples: scored at 50, a 100-update run's pictures
    and Figure 3's numbers come from update 100, and the report and the claim say so; a run that
    ended at 50 is not named."""
    sweep = tmp_path / "sweep"
    write(sweep, "sn-0", config("sn", iterations=100), metrics={IS: 9.0})
    for reg in ("wc", "wn"):
        short = write(sweep, f"{reg}-0", config(reg, iterations=50), metrics={IS: 5.0})
        result = json.loads((short / "result.json").read_text())
        result.update(iteration=50, iterations_planned=50)
        (short / "result.json").write_text(json.dumps(result))
    text = report.make_report([sweep], tmp_path / "out", at=50).read_text()
    section = text.split("## Discriminator spectra and samples")[1].split("\n## ")[0]
    assert "theirs come from their end: sn, D, seed 0 at 100\n" in section
    figure_3 = next(line for line in text.splitlines() if line.startswith("| Figure 3 "))
    assert figure_3.endswith("; sn's spectra from its end, update 100 |")
    assert "their end" not in report.make_report([sweep], tmp_path / "final").read_text()


def test_a_tie_between_settings_goes_to_the_earlier_one(tmp_path):
    sweep = tmp_path / "sweep"
    for setting in ("C", "B", "D"):
        for seed in range(2):
            write(sweep, f"{setting}-{seed}", config("dragan", setting=setting, seed=seed),
                  metrics={IS: 2.0 + (setting == "D") + 0.1 * seed})
    comparison = Comparison(*collect([sweep]))
    assert list(comparison.worst_settings(IS).setting) == ["B"]   # B and C tie at 2.05
    assert list(comparison.best_settings(IS).setting) == ["D"]


def test_the_overview_orders_methods_by_their_worst_setting(tmp_path):
    sweep = tmp_path / "sweep"
    for reg, by_setting in (("none", {"A": 9.0, "D": 1.0}), ("sn", {"A": 7.0, "D": 6.0}), ("wn", {"A": 8.0, "D": 3.0})):
        for setting, value in by_setting.items():
            for seed in range(2):
                write(sweep, f"{reg}-{setting}-{seed}", config(reg, setting=setting, seed=seed),
                      metrics={IS: value + 0.1 * seed})
    fig = F.overview_heatmap(Comparison(*collect([sweep])), IS)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["sn", "wn", "none"]
