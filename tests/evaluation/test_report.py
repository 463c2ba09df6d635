"""The report end to end: files, numbers against independent computations, CLI behaviour."""

import base64
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from evaluation import analysis as analysis_module
from evaluation import report as report_module
from evaluation.__main__ import main
from evaluation.analysis import ReportConfig, analyse
from evaluation.errors import ConfigError
from evaluation.manifest import load_manifest
from evaluation.ratings import Ratings
from evaluation.report import write_report
from evaluation.simulation import SimulationConfig, simulate_panel
from tests.evaluation.inputs import write_manifest

# Metrics missing from the manifest are not computed from audio here (test_correlations does that).
FAST = ReportConfig(
    n_permutations=500, n_boot=200, pdf_figures=False, compute_missing_metrics=False
)


def _set(tmp_path, esr_good=0.01, esr_bad=0.2):
    trials = []
    for item in ("guitar", "bass", "keys"):
        for group, scale in (("S-16-8", 2.0), ("S-32-8", 1.0)):
            trials.append(
                {
                    "id": f"{item}-{group}",
                    "item": item,
                    "group": group,
                    "conditions": [
                        ("hidden_reference", "hidden_reference", None),
                        ("anchor_3k5", "anchor_low", None),
                        ("anchor_7k", "anchor_mid", None),
                        (
                            "distilled",
                            "system",
                            {
                                "recipe": "kd",
                                "arch": "lstm",
                                "bits": 32,
                                "bytes": 4000 * scale,
                                "rtf_offline": 0.01,
                                "objective": {"esr": esr_good * scale},
                            },
                        ),
                        (
                            "non_distilled",
                            "system",
                            {
                                "recipe": "baseline",
                                "arch": "lstm",
                                "bits": 32,
                                "bytes": 4000 * scale,
                                "rtf_offline": 0.01,
                                "objective": {"esr": esr_bad * scale},
                            },
                        ),
                        (
                            "kd_q4",
                            "system",
                            {
                                "recipe": "kd_qat",
                                "arch": "lstm",
                                "bits": 4,
                                "bytes": 500 * scale,
                                "rtf_offline": 0.02,
                                "objective": {"esr": 3 * esr_good * scale},
                            },
                        ),
                    ],
                }
            )
    return load_manifest(write_manifest(tmp_path / "demo-set", trials))


def _ratings(manifest, **kwargs):
    panel = simulate_panel(
        manifest, SimulationConfig(**{"n_listeners": 14, "n_careless": 2, "seed": 5, **kwargs})
    )
    return Ratings(
        panel, pd.DataFrame({"participant": pd.unique(panel["participant"])}), "simulated.csv"
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    manifest = _set(tmp)
    ratings = _ratings(manifest)
    analysis = analyse(ratings, manifest, config=FAST)
    out = write_report(analysis, tmp / "reports" / "demo-set")
    return analysis, out, ratings


def test_report_writes_every_file_of_the_contract(written):
    _, out, _ = written
    for name in (
        "report.html",
        "screening.csv",
        "descriptives.csv",
        "tests.csv",
        "objective.csv",
        "correlations.csv",
        "tables.tex",
        "numbers.json",
    ):
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {
        "boxplots.png",
        "means_by_item.png",
        "screening.png",
        "differences_distilled_vs_non_distilled.png",
        "pareto_bytes.png",
    } <= set(pngs)
    assert not list(out.parent.glob(".demo-set-*"))  # no staging folder left behind


def test_html_is_self_contained_and_reads_like_results(written):
    _, out, _ = written
    text = (out / "report.html").read_text()
    assert "data:image/png;base64," in text
    assert 'src="http' not in text and "<link" not in text and "<script" not in text
    for phrase in (
        "After post-screening, 12 of 14 listeners remained",
        "Post-screening (ITU-R BS.1534-3 §4.1.2)",
        "BS.1534-3 §10 checklist",
        "Holm-adjusted",
        "over listeners",
    ):
        assert phrase in text, phrase


def test_numbers_agree_with_independent_computation(written):
    analysis, out, ratings = written
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["screening"]["excluded"] == ["S013", "S014"]
    assert numbers["validation"]["n_participants"] == 14
    assert set(numbers["software"]) >= {
        "numpy",
        "scipy",
        "pandas",
        "statsmodels",
        "matplotlib",
        "python",
    }
    assert numbers["config"]["n_permutations"] == 500 and numbers["seeds"]["permutation"] == 0
    kept = ratings.ratings[~ratings.ratings["participant"].isin(["S013", "S014"])]
    kept = kept.merge(
        analysis.manifest.conditions[["trial", "condition", "group"]], on=["trial", "condition"]
    )
    listener_means = (
        kept[(kept["group"] == "S-32-8") & (kept["condition"] == "distilled")]
        .groupby("participant")["score"]
        .mean()
    )
    row = next(
        r
        for r in numbers["descriptives"]
        if r["group"] == "S-32-8" and r["condition"] == "distilled"
    )
    assert row["mean"] == pytest.approx(listener_means.mean())
    assert (row["ci_over"], row["ci_method"]) == ("listeners", "t")
    comparison = next(
        r
        for r in numbers["comparisons"]
        if r["group"] == "S-32-8" and r["kind"] == "distilled_vs_non_distilled"
    )
    other = (
        kept[(kept["group"] == "S-32-8") & (kept["condition"] == "non_distilled")]
        .groupby("participant")["score"]
        .mean()
    )
    assert comparison["mean_diff"] == pytest.approx((listener_means - other).mean())
    assert comparison["correction"] == "holm"


def test_tables_tex_is_booktabs(written):
    _, out, _ = written
    tex = (out / "tables.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") >= 3
    assert r"non\_distilled" in tex  # underscores escaped


@pytest.mark.slow
def test_too_easy_warning(tmp_path):
    manifest = _set(tmp_path, esr_good=0.0005, esr_bad=0.001)
    analysis = analyse(_ratings(manifest, noise_sd=3.0, n_listeners=8), manifest, config=FAST)
    assert any("too easy" in w for w in analysis.warnings)


@pytest.mark.slow
def test_failed_write_keeps_the_previous_report(written, tmp_path, monkeypatch):
    analysis, previous, _ = written
    shutil.copytree(previous, tmp_path / "r")
    marker = (tmp_path / "r" / "report.html").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "render_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(analysis, tmp_path / "r")
    assert (tmp_path / "r" / "report.html").read_text() == marker
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.slow
def test_cli_report_on_the_stahl_panel(stahl_dir, tmp_path, capsys):
    out = tmp_path / "stahl"
    code = main(
        [
            "report",
            "--ratings",
            str(stahl_dir / "ratings_formated.csv"),
            "--roles",
            "Reference=hidden_reference,Anchor=anchor_low",
            "--pairs",
            "Proposed 5.51:Lyra 6,AudioDec:Lyra 6",
            "--out",
            str(out),
            "--no-pdf",
            "--permutations",
            "500",
            "--bootstrap",
            "200",
        ]
    )
    assert code == 0, capsys.readouterr().err
    numbers = json.loads((out / "numbers.json").read_text())
    assert sorted(numbers["screening"]["excluded"], key=int) == ["6", "17"]
    assert numbers["validation"]["complete"] is False
    assert numbers["omnibus"]["all"]["method"] == "lmm"  # 8 of 16 signals per listener
    assert [(c["a"], c["b"]) for c in numbers["comparisons"]] == [
        ("Proposed 5.51", "Lyra 6"),
        ("AudioDec", "Lyra 6"),
    ]
    assert "report written to" in capsys.readouterr().out


def test_cli_simulate_then_validate(tmp_path, capsys):
    manifest = _set(tmp_path)
    csv = tmp_path / "panel.csv"
    assert (
        main(
            [
                "simulate",
                "--stimuli",
                str(manifest.folder),
                "--out",
                str(csv),
                "--listeners",
                "6",
                "--careless",
                "1",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(csv)) == 6 * 6 * 6
    assert main(["validate", "--ratings", str(csv), "--stimuli", str(manifest.folder)]) == 0
    out = capsys.readouterr().out
    assert "6 listeners" in out and "excluded S006" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "--ratings", "missing.csv", "--out", "x"], "no such ratings file"),
        (
            ["validate", "--ratings", "{csv}", "--roles", "Reference"],
            "expected condition=role pairs",
        ),
        (["validate", "--ratings", "{csv}", "--roles", "a=anchor"], "expected roles among"),
        (
            ["validate", "--ratings", "{csv}", "--columns", "participant"],
            "--columns: expected tidy=file pairs, found 'participant'",
        ),
        (["power", "--difference", "5"], "either --sd-diff"),
        (
            ["report", "--ratings", "{csv}", "--out", "{out}", "--pairs", "a:zz"],
            "condition(s) ['zz'] not rated",
        ),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(tmp_path, capsys, argv, message):
    csv = tmp_path / "r.csv"
    csv.write_text("participant,trial,condition,score\nA,t,a,50\n")
    code = main(
        [a.replace("{csv}", str(csv)).replace("{out}", str(tmp_path / "out")) for a in argv]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_power_and_help(capsys):
    assert (
        main(
            [
                "power",
                "--difference",
                "5",
                "--sd-diff",
                "10",
                "--simulations",
                "500",
                "--max-listeners",
                "60",
            ]
        )
        == 0
    )
    assert "listeners needed" in capsys.readouterr().out
    for verb in ("report", "simulate", "validate", "power", "bench"):
        with pytest.raises(SystemExit) as info:
            main([verb, "--help"])
        assert info.value.code == 0
    assert "--ci-over" in capsys.readouterr().out


@pytest.mark.slow
def test_report_without_manifest_has_no_objective_section(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        for t in range(3):
            rows += [
                (f"L{i}", f"t{t}", "ref", 100.0),
                (f"L{i}", f"t{t}", "x", float(rng.integers(40, 80))),
                (f"L{i}", f"t{t}", "y", float(rng.integers(20, 60))),
            ]
    frame = pd.DataFrame(rows, columns=["participant", "trial", "condition", "score"])
    from evaluation.ratings import to_tidy

    ratings = Ratings(to_tidy(frame), pd.DataFrame({"participant": []}), "foreign.csv")
    analysis = analyse(
        ratings, None, config=FAST, roles={"ref": "hidden_reference"}, pairs=[("all", "x", "y")]
    )
    assert analysis.objective.empty and "no stimulus manifest" in " ".join(analysis.notes)
    assert analysis.comparisons.iloc[0]["kind"] == "requested"
    write_report(analysis, tmp_path / "foreign")
    assert (tmp_path / "foreign" / "report.html").is_file()


def test_report_config_file_and_command_line_override(tmp_path, monkeypatch):
    captured = {}

    def fake_analyse(ratings, manifest, *, config, **kwargs):
        captured["config"] = config
        raise analysis_module.DesignError("stop here")

    monkeypatch.setattr(analysis_module, "analyse", fake_analyse)
    csv = tmp_path / "r.csv"
    csv.write_text("participant,trial,condition,score\nA,t,a,50\n")
    yaml_file = tmp_path / "report.yaml"
    yaml_file.write_text("correction: hochberg\nmargin: 3\nn_boot: 500\n")
    code = main(
        [
            "report",
            "--ratings",
            str(csv),
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(yaml_file),
            "--margin",
            "4",
        ]
    )
    assert code == 2
    config = captured["config"]
    assert (config.correction, config.margin, config.n_boot, config.ci_over) == (
        "hochberg",
        4.0,
        500,
        "listeners",
    )
    yaml_file.write_text("corection: holm\n")
    assert (
        main(
            [
                "report",
                "--ratings",
                str(csv),
                "--out",
                str(tmp_path / "o"),
                "--config",
                str(yaml_file),
            ]
        )
        == 2
    )


def test_cli_power_from_a_pilot_panel(stahl_dir, capsys):
    code = main(
        [
            "power",
            "--pilot",
            str(stahl_dir / "ratings_formated.csv"),
            "--roles",
            "Reference=hidden_reference,Anchor=anchor_low",
            "--difference",
            "10",
            "--simulations",
            "500",
            "--max-listeners",
            "80",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "pilot: SD of listener-mean differences over 21 system pairs" in out
    )  # 7 systems → 21 pairs
    assert "listeners needed" in out


def test_report_gives_both_omnibus_tests_the_choice_and_its_reason(written):
    analysis, out, _ = written
    tests = pd.read_csv(out / "tests.csv")
    omni = tests[tests["test"] == "omnibus_rm_anova"]
    assert not omni.empty
    for column in (
        "p_hf",
        "df1_hf",
        "df2_hf",
        "mv_F",
        "mv_df1",
        "mv_df2",
        "p_mv",
        "chosen",
        "chosen_reason",
    ):
        assert omni[column].notna().any(), column
    df_columns = [c for c in tests.columns if "df" in c and pd.api.types.is_numeric_dtype(tests[c])]
    assert not (tests[df_columns] < 0).any().any()
    html = (out / "report.html").read_text()
    assert "Algina &amp; Keselman, 1997" in html
    assert "univariate Huynh–Feldt" in html and "multivariate (Hotelling T²)" in html
    assert "Test chosen:" in html and "because Algina–Keselman, K = " in html


def test_report_of_a_square_panel_marks_the_impossible_multivariate_test(tmp_path):
    from tests.evaluation.test_omnibus import _square_panel

    panel = _square_panel()  # 14 listeners × 9 systems × 14 items, complete
    ratings = Ratings(
        panel, pd.DataFrame({"participant": pd.unique(panel["participant"])}), "sq.csv"
    )
    out = write_report(analyse(ratings, config=FAST), tmp_path / "square")
    tests = pd.read_csv(out / "tests.csv")
    omni = tests[tests["test"] == "omnibus_rm_anova"].set_index("effect")
    # condition × item: 104 contrasts, 14 listeners: df2 would be 14 − 104 = −90.
    assert np.isnan(omni.loc["condition:item", "mv_df2"])
    assert "not computable" in omni.loc["condition:item", "mv_note"]
    df_columns = [c for c in tests.columns if "df" in c and pd.api.types.is_numeric_dtype(tests[c])]
    assert not (tests[df_columns] < 0).any().any()
    assert omni.loc["item", "chosen"] == "huynh_feldt"
    assert (omni.loc["item", "mv_df1"], omni.loc["item", "mv_df2"]) == (13, 1)
    numbers = json.loads((out / "numbers.json").read_text())
    effects = {e["effect"]: e for e in numbers["omnibus"]["all"]["effects"]}
    assert effects["condition:item"]["mv_df2"] is None
    # tables.tex gives the chosen test's own df (the ε-adjusted ones), not the unadjusted F's.
    item = omni.loc["item"]
    row = f"all & item & Huynh--Feldt & F = {item['F']:.2f} & {item['df1_hf']:.2f}, {item['df2_hf']:.2f}"
    assert row in (out / "tables.tex").read_text()


def _escaping_panel():
    """8 listeners × 3 trials of a hidden reference and two systems, one named like markup."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        for t in range(3):
            rows += [
                (f"L{i}", f"t{t}", "ref", 100.0),
                (f"L{i}", f"t{t}", "<b>x</b>", float(rng.integers(40, 80))),
                (f"L{i}", f"t{t}", "y", float(rng.integers(20, 60))),
            ]
    frame = pd.DataFrame(rows, columns=["participant", "trial", "condition", "score"])
    from evaluation.ratings import to_tidy

    return frame, Ratings(to_tidy(frame), pd.DataFrame({"participant": []}), "foreign.csv")


@pytest.mark.slow
def test_html_escapes_names_and_embeds_every_figure(tmp_path):
    frame, ratings = _escaping_panel()
    analysis = analyse(
        ratings,
        None,
        config=FAST,
        roles={"ref": "hidden_reference"},
        pairs=[("all", "<b>x</b>", "y")],
        title="A & B <test>",
    )
    out = write_report(analysis, tmp_path / "escaped")
    text = (out / "report.html").read_text()
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<title>A &amp; B &lt;test&gt; — MUSHRA report</title>" in text
    # p-values such as "p < .001" are text, escaped like any other
    assert "p < ." not in text
    for section in ("Method", "Results", "BS.1534-3 §10 checklist"):
        assert f"<h2>{section}</h2>" in text, section
    for section in ("Omnibus tests", "Planned comparisons", "Objective metrics and scores"):
        assert f"<h3>{section}</h3>" in text, section
    assert "After post-screening, 8 of 8 listeners remained (72 ratings)." in text
    means = frame.groupby("condition")["score"].mean()
    assert f"<td>{means['<b>x</b>']:.1f}</td>" in text and f"<td>{means['y']:.1f}</td>" in text
    assert "Anchors: none identified." in text
    assert "Material: 3 items (t0, t1, t2)." in text
    # every figure written is embedded once, byte for byte, and nothing is linked
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) == len(analysis.figures) == text.count("data:image/png;base64,") == 4
    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode("ascii") in text, png.name
    assert "<link" not in text and "<script" not in text and 'src="http' not in text


def test_analysis_holds_what_the_report_picks_out(written):
    analysis, _, ratings = written
    kept = ratings.ratings[~ratings.ratings["participant"].isin(["S013", "S014"])].merge(
        analysis.manifest.conditions[["trial", "condition", "group", "role"]],
        on=["trial", "condition"],
        suffixes=("_given", ""),
    )
    systems = kept[kept["role"] == "system"]
    per_listener = systems.groupby(["group", "condition", "participant"])["score"].mean()
    means = per_listener.groupby(["group", "condition"]).mean()
    assert (analysis.best_system["group"], analysis.best_system["condition"]) == means.idxmax()
    assert (analysis.worst_system["group"], analysis.worst_system["condition"]) == means.idxmin()
    assert analysis.best_system["mean"] == pytest.approx(means.max())
    assert analysis.systems == ["distilled", "kd_q4", "non_distilled"]
    assert analysis.anchors == ["anchor_3k5 (low, 3.5 kHz)", "anchor_7k (mid, 7 kHz)"]
    assert analysis.items == ["bass", "guitar", "keys"]
    # kd_q4 is 8 times smaller than the others and the only model of its size in each group
    assert set(analysis.pareto_front["condition"]) >= {"kd_q4"}
    assert list(analysis.pareto_front["bytes"]) == sorted(analysis.pareto_front["bytes"])
    assert {"boxplots", "means_by_item", "screening", "distilled_vs_non_distilled"} <= set(
        analysis.figures
    )
    assert set(analysis.tests["test"]) == {"planned_comparison", "omnibus_rm_anova", "friedman"}


def test_analyse_refuses_requested_pairs_it_cannot_compare():
    _, ratings = _escaping_panel()
    with pytest.raises(ConfigError, match=r"^pairs: condition\(s\) \['zz'\] not rated"):
        analyse(ratings, None, config=FAST, pairs=[("all", "y", "zz")])
    with pytest.raises(ConfigError, match=r"^pairs: unknown group 'G'"):
        analyse(ratings, None, config=FAST, pairs=[("G", "y", "ref")])
