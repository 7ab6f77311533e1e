"""Table specs and the paper's published numbers load, agree with each other, and stay as transcribed."""

from __future__ import annotations

import pytest

from leaderboards.spec import Column, load_published, load_spec, load_specs, published_number


def test_all_specs_load_and_match_published_columns():
    published = load_published()
    specs = load_specs()
    # every paper table has a spec; specs of tables beyond the paper (table_zh, a third language) have none
    assert {s.paper_table for s in specs if s.paper_table} == {"I(a)", "I(b)", "II(a)", "II(b)", "III", "IV"}
    for spec in specs:
        assert spec.reference in {r.label for r in spec.rows}
        labels = {c.label for c in spec.columns}
        for row in published.get(spec.paper_table, []):
            assert set(row) - {"system", "setting", "note"} <= labels, (spec.id, row)


def test_published_numbers_are_the_papers():
    p = load_published()
    # as printed: "19.2" not 19.20, "72" not 72.00, "35.40" keeps its zero
    assert len(p["I(a)"]) == 6 and p["I(a)"][-1] == {"system": "cViL_KD", "Accuracy": "35.72", "BLEU": "33.1"}
    assert p["I(a)"][0]["Accuracy"] == "19.2" and p["I(a)"][0]["BLEU"] is None  # PCATT*: "-" in the paper
    assert sum(len(r) - 1 for r in p["I(b)"]) == 9 and p["I(b)"][0]["naze (why)"] == "11.44"
    assert p["I(b)"][0]["dare (who)"] == "35.40"
    # Table I(b) names no system: not attributed to cViL_KD
    assert p["I(b)"][0]["system"] == "system not named in the paper"
    assert [r["Accuracy"] for r in p["II(a)"]] == ["60.15", "62.50", "64.51", "68.39", "73.13", "67.71", "72.65"]
    assert p["II(b)"][0] == {"system": "cViL_KD", "Yes / No": "86.99", "Number": "58.18", "Other": "63.65",
                             "Overall": "72.65"}
    assert [r["Accuracy"] for r in p["III"]] == ["35.72", "35.58", "35.57", "35.38", "35.19", "34.55", "33.75"]
    assert p["IV"][3]["VQA v2.0 JA Accuracy"] == "72" and p["IV"][0]["VQA v2.0 EN Accuracy"] == "71.4"
    assert published_number(p["IV"][3]["VQA v2.0 JA Accuracy"]) == 72.0


def test_published_bare_number_is_rejected(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text('tables:\n  I(a):\n    rows:\n      - {system: X, Accuracy: 19.20}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="table I\\(a\\), 'X', 'Accuracy': expected the printed number"):
        load_published(path)


def test_bad_spec_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\ntitle: t\ngrid: g\nreference: NOPE\nrows: [{label: A, cell: a}]\n"
                    "columns: [{key: acc, label: Acc, metric: test.accuracy}]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="reference 'NOPE' is not a row label"):
        load_spec(path)


def test_delta_scale():
    assert Column("a", "A", "test.accuracy").delta_scale == 100.0
    assert Column("b", "B", "test.bleu", test="bleu").delta_scale == 1.0
