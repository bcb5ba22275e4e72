"""Rendering of the audit report (HTML, Markdown, terminal headline)."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from medistill.audit.fairness import worst_group
from medistill.audit.gates import load_policy, rejudge
from medistill.audit.report import headline, render_html, render_markdown
from medistill.audit.report_format import (
    fmt_bytes,
    fmt_eps,
    fmt_num,
    fmt_pct,
    fmt_rate,
    fmt_sci,
    fmt_sig,
    fmt_value,
)

EVIL = '<script>alert("x")</script><img src="https://evil.example/p.png">'
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _roc(rng: np.random.Generator, strength: float) -> dict[str, list[float]]:
    fpr = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 200)), [1.0]])
    return {"fpr": fpr.tolist(), "tpr": (fpr ** (1 / (1 + strength))).tolist()}


def _mia_side(auc: float, lower_bound: float, strength: float, rng: np.random.Generator) -> dict[str, Any]:
    rates = {"0.01": 0.011, "0.001": 0.0}
    return {
        "auc": auc, "auc_ci": [auc - 0.02, auc + 0.02], "tpr_at_fpr": rates,
        "tpr_at_fpr_ci": {"0.01": [0.006, 0.018], "0.001": [0.0, 0.002]},
        "epsilon_lower_bound": lower_bound,
        "attacks": [
            {"name": "loss_threshold", "auc": auc, "tpr_at_fpr": rates, "roc": _roc(rng, strength)},
            {"name": "rmia", "auc": auc + 0.01, "tpr_at_fpr": {"0.01": 0.02, "0.001": 0.001}, "roc": _roc(rng, 2 * strength)},
        ],
    }


def _group(n: int, teacher: float, student: float, mia: float, ci: list[float], *,
           judged: bool = True) -> dict[str, Any]:
    return {"n": n, "n_patients": n, "teacher_auroc": teacher, "dp_teacher_auroc": teacher - 0.01,
            "student_auroc": student, "auroc": student, "retention": student / teacher,
            "retention_ci": ci, "teacher_auroc_ci": [teacher - 0.02, teacher + 0.02],
            "student_auroc_ci": [student - 0.03, student + 0.03],
            "dp_teacher_auroc_ci": [teacher - 0.03, teacher + 0.01],
            "calibration_in_the_large": -0.01, "ece": 0.02, "mia_auc": mia, "mia_n": n,
            "judged": judged, "small_group": not judged,
            "reason": None if judged else "60 test patients, fewer than audit.fairness_min_patients = 100"}


def _fairness() -> dict[str, Any]:
    groups = {"sex": {"female": _group(2000, 0.86, 0.85, 0.51, [0.95, 1.02]),
                      "male": _group(1900, 0.85, 0.82, 0.52, [0.92, 1.0])},
              "age": {"<40": _group(60, 0.80, 0.62, 0.55, [0.6, 0.9], judged=False),
                      "65+": _group(1500, 0.84, 0.80, 0.50, [0.9, 1.0])}}
    return {**groups, "worst_group": worst_group(groups)}


def example_report() -> dict[str, Any]:
    """A realistic report.json of a run that passes the default policy (before judging)."""
    rng = np.random.default_rng(0)
    return {
        "schema_version": "1",
        "run": {
            "medistill_version": "0.1.0", "created_at": "2026-11-29T10:00:00Z", "pipeline_sha256": "ab" * 32, "seed": 0,
            "dataset": {"name": "builtin cohort", "source": "builtin", "n_patients": 20000, "n_train": 12000,
                        "n_test": 4000, "n_holdout": 4000, "n_features": 17, "label": "cv_event_1y", "prevalence": 0.14},
            "teacher": {"kind": "hist_gradient_boosting"},
            "ensemble": {"n_teachers": 100, "aggregator": "gnmax", "sigma": 40.0, "n_queries": 500},
            "student": {"hidden_layers": [64, 64], "n_parameters": 5000, "alpha": 0.5, "epochs": 10,
                        "noise_multiplier": 1.1, "sample_rate": 0.02, "steps": 600, "max_grad_norm": 1.0},
            "transfer": {"source": "schema_prior", "n_rows": 2000, "epsilon_cost": 0.0},
        },
        "utility": {
            "teacher": {"auroc": 0.8531, "auprc": 0.52, "accuracy": 0.88, "brier": 0.09, "ece": 0.02, "auroc_ci": [0.84, 0.866]},
            "student": {"auroc": 0.8187, "auprc": 0.45, "accuracy": 0.862, "brier": 0.1, "ece": 0.03},
            "ensemble": {"auroc": 0.83, "auprc": 0.47, "accuracy": 0.87, "brier": 0.095, "ece": 0.025},
            "baselines": {"dp_sgd_direct": {"auroc": 0.78, "auprc": 0.4, "accuracy": 0.86, "brier": 0.11, "ece": 0.04}},
            "retention": {"auroc": 0.96, "accuracy": 0.98, "auroc_skill": 0.92},
        },
        "speed": {
            "threads": 1,
            "teacher": {"latency_ms_p50": 2.4, "latency_ms_p95": 3.1, "throughput_rows_per_s": 120000.0,
                        "size_bytes": 2_400_000, "runtime": "sklearn"},
            "student": {"latency_ms_p50": 0.06, "latency_ms_p95": 0.09, "throughput_rows_per_s": 1_440_000.0,
                        "size_bytes": 24_000, "runtime": "onnxruntime"},
            "speedup": {"latency": 40.0, "throughput": 12.0},
        },
        "privacy": {
            "unit": "patient", "formal_guarantee": True, "epsilon": 2.98, "delta": 5e-6, "target_epsilon": 3.0,
            "accountant": "pld",
            "ledger": [
                {"stage": "labels", "mechanism": "gaussian", "noise_multiplier": 28.3, "sample_rate": None,
                 "count": 500, "epsilon_alone": 1.9, "description": "GNMax votes on transfer rows"},
                {"stage": "student_dp_sgd", "mechanism": "poisson_gaussian", "noise_multiplier": 1.1,
                 "sample_rate": 0.02, "count": 600, "epsilon_alone": 1.5},
            ],
            "covered": "The released student and everything derived from it, for adding or removing one patient.",
            "caveats": ["Transfer rows are sampled from a schema prior.", "Hyper-parameters were not tuned on sensitive rows."],
            "transfer_ledger": None,
        },
        "mia": {"student": _mia_side(0.51, 0.0, 0.02, rng), "teacher": _mia_side(0.71, 1.8, 1.0, rng)},
        "fairness": _fairness(),
    }


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture
def report(policy) -> dict[str, Any]:
    return rejudge(example_report(), policy)


@pytest.fixture(scope="module")
def released_html(policy) -> str:
    return render_html(rejudge(example_report(), policy))


class Page(HTMLParser):
    """Collects body text, outside references and tag balance."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.body_text: list[str] = []
        self.in_body = False
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.in_body = self.in_body or tag == "body"
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "data", "poster", "xlink:href"}:
                self.refs.append((tag, name, value or ""))
            if name == "style":
                self.styles.append(value or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        elif self.in_body and data.strip():
            self.body_text.append(" ".join(data.split()))


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def first_body_line(html: str) -> str:
    """The first line after the internal-report notice (which is always first, #15.7)."""
    return parse(html).body_text[1]


def first_md_line(markdown: str) -> str:
    """The first line after the internal-report notice (which is always first, #15.7)."""
    return [line for line in markdown.splitlines() if line.strip()][1].strip("*# ")


def test_15_7_report_says_it_is_internal_on_its_first_line(report: dict[str, Any]) -> None:
    from medistill.audit.report import INTERNAL_NOTICE

    assert parse(render_html(report)).body_text[0] == INTERNAL_NOTICE
    assert render_markdown(report).splitlines()[0] == f"*{INTERNAL_NOTICE}*"
    assert INTERNAL_NOTICE.startswith("INTERNAL AUDIT REPORT")


# --------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_well_formed(released_html: str) -> None:
    page = parse(released_html)
    assert released_html.startswith("<!DOCTYPE html>")
    assert page.errors == [] and page.stack == []
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert page.refs, "expected the plots and the table of contents"
    for tag, name, value in page.refs:
        assert value.startswith(("data:", "#")), (tag, name, value)
    css = " ".join(page.styles)
    assert "@import" not in css and "url(" not in css


def test_html_embeds_both_plots_as_inline_svg(released_html: str) -> None:
    images = [v for t, n, v in parse(released_html).refs if t == "img"]
    assert len(images) == 3  # ROC, utility bars, retention per group
    for uri in images:
        assert uri.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(uri.split(",", 1)[1]).decode()
        assert "<svg" in svg and "<image" not in svg and "url(http" not in svg
        assert all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', svg))


def test_html_puts_the_verdict_first(released_html: str) -> None:
    assert first_body_line(released_html) == "RELEASE — all gates passed"
    assert "NO FORMAL PRIVACY GUARANTEE" not in released_html


def test_html_sections(released_html: str) -> None:
    text = " ".join(parse(released_html).body_text)
    for expected in (
        "auroc_retention", "PASS", "one patient", "2.980", "5×10⁻⁶", "pld",
        "labels", "gaussian", "28.3", "poisson_gaussian", "0.02", "600", "1.500",  # ledger
        "Transfer rows are sampled from a schema prior.", "everything derived from it",  # caveats, covered
        "0.853 (0.840–0.866)", "0.819", "96.0 %", "92.0 %", "dp_sgd_direct",  # utility
        "2.4 ms", "0.06 ms", "40.0×", "12.0×", "2.4 MB", "24.0 kB", "onnxruntime",  # speed
        "loss_threshold", "rmia", "0.510 (0.490–0.530)", "1.10 % (0.60–1.80 %)", "0.00 % (0.00–0.20 %)", "an attack that finds nothing on the teacher has no power",
        "small group", "2,000",  # fairness
        "12,000 / 4,000 / 4,000", "cv_event_1y", "14.0 %", "abab", "hist_gradient_boosting",
        "MLP 64–64, 5,000 parameters", "noise multiplier 1.1, sample rate 0.02, 600 steps, clipping norm 1",
        "not covered by the privacy guarantee", "Privacy officer",
    ):
        assert expected in text, expected


def test_html_is_deterministic(released_html: str, policy) -> None:
    assert render_html(rejudge(example_report(), policy)) == released_html


def test_no_formal_guarantee_is_the_first_line(report: dict[str, Any], policy) -> None:
    report["privacy"].update(formal_guarantee=False, epsilon=None,  # report.json stores ∞ as null
                             caveats=["A single non-private teacher labelled the transfer data.", "Other."])
    report["privacy"]["ledger"].append({"stage": "labels_plurality", "mechanism": "non_private", "noise_multiplier": None,
                                        "sample_rate": None, "count": 1, "epsilon_alone": None})
    report = rejudge(report, policy)
    expected = "NO FORMAL PRIVACY GUARANTEE: A single non-private teacher labelled the transfer data."
    html, markdown = render_html(report), render_markdown(report)
    assert first_body_line(html) == expected
    assert first_md_line(markdown) == expected
    assert parse(html).body_text[2].startswith("REJECT — 2 gates failed: epsilon_within_target ('privacy.epsilon' is infinite: the run has no formal privacy guarantee); formal_guarantee (measured no, required = yes)")
    assert "ε (privacy loss): ∞ (target 3.000" in markdown
    assert "| labels_plurality | non_private | — | — | 1 | ∞ | — |" in markdown
    assert "| Formal ε from the ledger (upper bound) | ∞ |" in markdown
    assert "ε = ∞" in headline(report)[2]
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_privacy_bug_is_in_the_first_line(report: dict[str, Any], policy) -> None:
    report["mia"]["student"]["epsilon_lower_bound"] = 4.1
    report = rejudge(report, policy)
    line = first_body_line(render_html(report))
    assert line.startswith("REJECT — possible privacy bug: the empirical ε lower bound 4.100")
    assert "exceeds the ledger ε 2.980" in line
    assert first_md_line(render_markdown(report)).startswith("REJECT — possible privacy bug")


def test_review_line_names_the_failed_gate(report: dict[str, Any], policy) -> None:
    report["utility"]["retention"]["auroc"] = 0.85
    del report["mia"]["student"]["auc_ci"]
    line = headline(rejudge(report, policy))[0]
    assert line.startswith("REVIEW — 2 gates failed: ")
    assert "auroc_retention (measured 0.850, required ≥ 0.900)" in line
    assert "mia_auc (not measured)" in line


def test_escalates_a_stale_verdict(report: dict[str, Any]) -> None:
    report["privacy"]["formal_guarantee"] = False
    assert report["verdict"] == "release"  # judged before the change: the renderer must not trust it
    assert headline(report)[0].startswith("REVIEW — no formal privacy guarantee")


def test_values_are_escaped(report: dict[str, Any], policy) -> None:
    report["run"]["dataset"]["name"] = EVIL
    report["privacy"]["caveats"] = [EVIL]
    report["privacy"]["ledger"][0]["stage"] = EVIL
    report["mia"]["student"]["attacks"][0]["name"] = EVIL
    report["fairness"] = {EVIL: {EVIL: {"n": 5, "auroc": 0.5}}}
    report = rejudge(report, policy)
    report["gates"][0]["name"] = EVIL
    html = render_html(report)
    page = parse(html)
    assert "<script" not in html and "evil.example" not in " ".join(v for _, _, v in page.refs)
    assert "&lt;script&gt;" in html
    assert page.errors == [] and "script" not in page.tags
    markdown = render_markdown(report)
    assert "<script" not in markdown and "&lt;script&gt;" in markdown


def test_minimal_report_renders(policy) -> None:
    bare = {"schema_version": "1"}
    html, markdown = render_html(bare), render_markdown(bare)
    page = parse(html)
    assert page.errors == [] and page.stack == []
    assert page.body_text[1].startswith("NO FORMAL PRIVACY GUARANTEE")
    assert page.body_text[2] == "NOT JUDGED — no audit gates were evaluated for this run"
    assert "Membership inference was not measured." in markdown
    assert not [t for t in page.tags if t == "img"]
    judged = rejudge(bare, policy)
    assert judged["verdict"] == "reject"
    assert "not measured" in render_markdown(judged)


def test_no_roc_plot_without_roc_data(report: dict[str, Any]) -> None:
    for side in report["mia"].values():
        for attack in side["attacks"]:
            del attack["roc"]
    images = [v for t, n, v in parse(render_html(report)).refs if t == "img"]
    assert len(images) == 2  # the utility bar chart and the retention per group only


def test_attack_without_power_on_the_teacher_is_flagged(report: dict[str, Any]) -> None:
    teacher = report["mia"]["teacher"]
    teacher["auc"] = 0.5
    for attack in teacher["attacks"]:
        attack["auc"] = 0.5
    markdown = render_markdown(report)
    assert "No attack here found leakage in the teacher, so the student results below are uninformative." in markdown
    assert markdown.count("uninformative") >= 4


def test_empty_fairness(report: dict[str, Any]) -> None:
    report["fairness"] = {}
    assert "no fairness slices were computed" in render_markdown(report)


# --------------------------------------------------------------------------- Markdown and headline


def test_markdown_contains_the_ledger_table(report: dict[str, Any]) -> None:
    markdown = render_markdown(report)
    lines = markdown.splitlines()
    assert first_md_line(markdown) == "RELEASE — all gates passed"
    header = "| Stage | Mechanism | Noise multiplier | Sample rate | Count | ε alone | What it is |"
    i = lines.index(header)
    assert lines[i + 2] == "| labels | gaussian | 28.3 | — | 500 | 1.900 | GNMax votes on transfer rows |"
    assert lines[i + 3] == "| student_dp_sgd | poisson_gaussian | 1.1 | 0.02 | 600 | 1.500 | — |"
    assert "| epsilon_within_target | privacy.epsilon | 2.980 | ≤ 3.000 (privacy.target_epsilon) | PASS | reject |" in markdown
    assert "Transfer rows are sampled from a schema prior." in markdown


def test_markdown_tables_keep_their_columns(report: dict[str, Any]) -> None:
    report["run"]["dataset"]["name"] = "a | b"
    report["privacy"]["ledger"][0]["stage"] = "labels | extra"
    lines = render_markdown(report).splitlines()
    row = next(line for line in lines if line.startswith("| labels"))
    assert row.replace("\\|", "").count("|") == 8


def test_transfer_ledger_is_shown(report: dict[str, Any]) -> None:
    report["privacy"]["transfer_ledger"] = {"epsilon": 1.25, "delta": 1e-7, "ledger": [
        {"stage": "student_dp_sgd_transfer", "mechanism": "poisson_gaussian", "noise_multiplier": 1.1,
         "sample_rate": 0.05, "count": 600, "epsilon_alone": 1.25}]}
    markdown = render_markdown(report)
    assert "ε = 1.250, δ = 1×10⁻⁷" in markdown and "| student_dp_sgd_transfer |" in markdown


def test_run_facts_show_the_clipping_mode_and_its_check(report: dict[str, Any]) -> None:
    assert "Per-sample clipping" not in render_markdown(report)   # reports from before the key
    report["run"]["student"].update(grad_sample_mode="fused", clipping_check_rel_diff=1.19e-7)
    shown = ("fused (medistill), checked against Opacus's hooks clipping on a probe batch "
             "before training: relative difference 1.19×10⁻⁷")
    assert f"- Per-sample clipping: {shown}" in render_markdown(report)
    assert shown in " ".join(parse(render_html(report)).body_text)
    report["run"]["student"].update(grad_sample_mode="hooks", clipping_check_rel_diff=None)
    assert "- Per-sample clipping: hooks (Opacus)" in render_markdown(report)


def test_run_facts_name_the_dp_teacher_instead_of_an_empty_ensemble(report: dict[str, Any]) -> None:
    report["run"].update(ensemble=None, dp_teacher={
        "kind": "dp_linear", "n_labelled": 20000,
        "labels_cost": "free (post-processing of its ledger entry)", "dp_ebm_max_bins": 16,
        "selection": {"candidates": ["dp_ebm", "dp_linear"], "noisy_score_sums": {}}})
    markdown = render_markdown(report)
    assert ("- DP teacher: dp_linear, 20,000 transfer rows labelled, free (post-processing of "
            "its ledger entry), DP-EBM max bins 16, chosen by report-noisy-max from dp_ebm, "
            "dp_linear") in markdown
    assert "- Teacher ensemble:" not in markdown
    report["run"].update(dp_teacher=None, ensemble={"n_teachers": 50, "aggregator": "gnmax"})
    assert "- Teacher ensemble: 50 teachers, aggregator gnmax" in render_markdown(report)


def test_the_canary_audit_has_its_own_line_under_the_empirical_epsilon(report: dict[str, Any]) -> None:
    assert "canary audit (" not in render_markdown(report)   # a run without canaries
    report["mia"]["student"]["canary"] = {
        "n_canaries": 1000, "n_included": 487, "epsilon_lower_bound": 0.0, "k_pos": 100,
        "k_neg": 100, "trials": [{"k_pos": 10, "k_neg": 10, "guesses": 20, "correct": 12},
                                 {"k_pos": 100, "k_neg": 100, "guesses": 200, "correct": 104}]}
    line = "of which the one-run canary audit (1,000 canaries, 487 trained on, 104 of 200 guesses right)"
    assert f"| {line} | 0.000 |" in render_markdown(report)
    assert line in " ".join(parse(render_html(report)).body_text)


def test_headline(report: dict[str, Any]) -> None:
    lines = headline(report)
    assert lines == [
        "RELEASE — all gates passed",
        "AUROC: student 0.819 vs teacher 0.853 (retention 96.0 %); batch-1 latency speed-up 40.0×",
        "Privacy per patient: ε = 2.980, δ = 5×10⁻⁶ (pld accountant) — formal guarantee",
    ]
    bare = headline({"schema_version": "1"})
    assert len(bare) == 3 and "—" in bare[1] and bare[2].endswith("NO formal guarantee")


def test_inputs_are_not_mutated(report: dict[str, Any]) -> None:
    before = copy.deepcopy(report)
    render_markdown(report)
    headline(report)
    assert report == before


# --------------------------------------------------------------------------- number formats


@pytest.mark.parametrize(
    ("func", "value", "expected"),
    [
        (fmt_num, 0.85314, "0.853"), (fmt_num, None, "—"), (fmt_num, 20000, "20,000"), (fmt_num, math.nan, "NaN"),
        (fmt_eps, math.inf, "∞"), (fmt_eps, "Infinity", "∞"), (fmt_eps, 2.98, "2.980"), (fmt_eps, None, "—"),
        (fmt_sci, 5e-6, "5×10⁻⁶"), (fmt_sci, 1.25e-7, "1.25×10⁻⁷"),
        (fmt_pct, 0.96, "96.0 %"), (fmt_sig, 0.0600, "0.06"), (fmt_sig, 1_440_000.0, "1,440,000"),
        (fmt_sig, 28.31, "28.3"), (fmt_bytes, 24_000, "24.0 kB"), (fmt_bytes, 512, "512 B"),
        (fmt_value, True, "yes"), (fmt_value, 26, "26.0"), (fmt_value, 0.9, "0.900"), (fmt_value, "1", "1"),
        (fmt_rate, 0.011, "1.10 %"), (fmt_rate, None, "—"),
    ],
)
def test_number_formats(func, value: Any, expected: str) -> None:
    assert func(value) == expected


def test_distillation_against_direct_dp_sgd_over_seeds(report: dict[str, Any]) -> None:
    assert "Distillation against direct DP-SGD" not in render_markdown(report)   # older reports
    report["utility"]["baselines"]["dp_sgd_direct"].update(seeds=3, auroc_per_seed=[0.77, 0.78, 0.79])
    report["utility"]["distillation"] = {
        "seeds": 3, "student_auroc": [0.8187, 0.812, 0.815], "direct_auroc": [0.77, 0.78, 0.79],
        "student_mean": 0.8152, "direct_mean": 0.78, "difference": 0.0352, "difference_se": 0.0061}
    markdown = render_markdown(report)
    assert "| Baseline: dp_sgd_direct (mean of 3 DP-SGD seeds) |" in markdown
    assert ("| Student AUROC, mean of 3 DP-SGD seeds (the first is the released model; the "
            "others are audit-only retrainings) | 0.815 (0.819, 0.812, 0.815) |") in markdown
    assert "| Difference (student − direct) ± standard error | +0.0352 ± 0.0061 |" in markdown
    assert "so the two are compared over seeds" in markdown
    html = " ".join(parse(render_html(report)).body_text)
    assert "Distillation against direct DP-SGD" in html and "+0.0352 ± 0.0061" in html
    assert "Direct DP-SGD's preprocessing" not in markdown      # nothing borrowed here


@pytest.mark.parametrize(("ranged", "bought"), [
    (4, "noisy ranges of 4 numeric columns bought for ε 0.210 alone, the rest of ε to its DP-SGD"),
    (0, "the declared ranges, all of ε to its DP-SGD")])
def test_direct_baseline_says_it_paid_for_its_own_preprocessing(report: dict[str, Any], ranged: int,
                                                                 bought: str) -> None:
    report["utility"]["baselines"]["dp_sgd_direct"].update(
        seeds=3, auroc_per_seed=[0.77, 0.78, 0.79], epsilon=2.994,
        preprocessing={"source": "own_ranges", "ranged_columns": ranged, "ranges_epsilon": 0.21})
    report["utility"]["distillation"] = {
        "seeds": 3, "student_auroc": [0.81, 0.81, 0.82], "direct_auroc": [0.77, 0.78, 0.79],
        "student_mean": 0.813, "direct_mean": 0.78, "difference": 0.033, "difference_se": 0.006}
    expected = (f"its own, not the student's (fitted on the DP teacher's rows): {bought}; "
                "ε 2.994 in all")
    markdown = render_markdown(report)
    assert f"| Direct DP-SGD's preprocessing | {expected} |" in markdown
    assert expected in " ".join(parse(render_html(report)).body_text)
    report["utility"]["baselines"]["dp_sgd_direct"]["preprocessing"]["source"] = "student"
    assert "Direct DP-SGD's preprocessing" not in render_markdown(report)


def test_a_student_without_teacher_labels_says_it_is_a_direct_one(report: dict[str, Any]) -> None:
    report["run"]["student"]["alpha"] = 0.0
    markdown = render_markdown(report)
    assert ("| Teacher labels in the student's training | none: the plan bought no labels (see the "
            "caveats), so the student is itself a direct DP-SGD student |") in markdown
    assert "Teacher labels in the student's training" in " ".join(parse(render_html(report)).body_text)
    assert "compared over seeds" not in markdown


def _fairness_section(markdown: str) -> list[str]:
    section = markdown.split("## Fairness slices: who pays for privacy?", 1)[1]
    return [line for line in section.splitlines() if line.strip()]


def test_fairness_section_answers_who_pays_first(report: dict[str, Any]) -> None:
    lines = _fairness_section(render_markdown(report))
    assert lines[0] == (
        "Who pays for privacy? Most: age = 65+, where the student keeps 95.2 % of the "
        "non-private teacher's AUROC (0.800 vs 0.840; 95 % interval 90.0 %–100.0 %). The "
        "largest gap between groups is 0.024 in sex (male against female). 1 group too small "
        "to judge is flagged below, not gated.")
    table = "\n".join(lines)
    assert "| age | &lt;40 | 60 | 0.800 | 0.790 | 0.620 | 77.5 % (60.0–90.0 %) |" in table
    assert "small group: not judged: 60 test patients, fewer than audit.fairness_min_patients = 100 |" in table
    text = " ".join(parse(render_html(report)).body_text)
    assert "Who pays for privacy? Most: age = 65+" in text


def test_fairness_first_line_when_nothing_is_judged(report: dict[str, Any]) -> None:
    report["fairness"] = {"sex": {"f": {"n": 20, "auroc": 0.7, "judged": False,
                                        "reason": "20 test patients"}}}
    report["fairness"]["worst_group"] = worst_group(report["fairness"])
    assert _fairness_section(render_markdown(report))[0] == (
        "Who pays for privacy? Not measured: no group was large enough to judge. 1 group too "
        "small to judge is flagged below, not gated.")
    del report["fairness"]["worst_group"]  # a report from before issue 20
    assert "predates them" in _fairness_section(render_markdown(report))[0]


def test_16_4_input_check_notes_and_leakage_warning_are_rendered(policy) -> None:
    from medistill.data.checks import InputNote

    report = example_report()
    notes = [InputNote("label_leakage", "x_code", "Possible label leakage: column 'x_code'.",
                       "warning"),
             InputNote("kept_empty", "blank", "Column 'blank' is empty in every record.")]
    report["input_checks"] = [n.to_dict() for n in notes]
    report = rejudge(report, policy)
    html, markdown = render_html(report), render_markdown(report)
    assert "<li class=\"fail\">Possible label leakage: column &#39;x_code&#39;.</li>" in html
    assert "Column &#39;blank&#39; is empty in every record." in html
    assert "- **Warning:** Possible label leakage: column 'x_code'." in markdown
    assert "Input checks" not in render_markdown(rejudge(example_report(), policy))
