"""The throughput harness itself (fast, default run): it runs, its numbers are sane, the FLOPs count matches a
hand computation, and the speed gate decides as documented. No timing is asserted against a threshold here."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch

from bench.throughput import flops
from bench.throughput.cli import run_benchmark
from bench.throughput.harness import Harness, reference_kd_loss, walk_to_pairs
from bench.throughput.reference_align import reference_get_align
from bench.throughput.report import REPORT_KEYS, ROW_KEYS, format_table
from bench.throughput.speed_gate import Decision, base_decision, format_gate, ratio_decision
from bench.throughput.variants import NAIVE, SIZES, Variant, default_variant, variants_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Harness("tiny", device="cpu", world_root=tmp_path_factory.mktemp("tp_world"), n_batches=2, batch_size=8)
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ harness
def test_report_has_documented_keys_and_sane_numbers(harness):
    report = run_benchmark("tiny", steps=2, warmup=1, harness=harness)
    assert set(REPORT_KEYS) <= set(report)
    rows = report["rows"]
    assert {r["step"] for r in rows} == {"kd", "aug", "eval", "loading"}
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
        assert row["samples_per_s"] > 0 and math.isfinite(row["samples_per_s"])
        assert row["ms_min"] <= row["ms_median"] and len(row["times_ms"]) == 2
        assert row["vs_naive"] > 0 and row["mfu"] is None  # no MFU on CPU
    kd = {r["variant"]: r for r in rows if r["step"] == "kd"}
    assert {"optimized", "naive", "eager", "fixed128", "walk", "adamw_plain", "adamw_fused"} <= set(kd)
    assert kd["naive"]["vs_naive"] == pytest.approx(1.0)
    assert kd["optimized"]["vs_optimized"] == pytest.approx(1.0)
    assert kd["optimized"]["tokens_per_s"] > kd["optimized"]["samples_per_s"]  # several tokens per sample
    assert kd["optimized"]["model_gflop_per_step"] > 0
    assert report["summary"]["kd_speedup_vs_naive"] == pytest.approx(kd["optimized"]["vs_naive"])
    loading = {r["variant"] for r in rows if r["step"] == "loading"}
    assert {"packed_w0", "packed_w2", "naive"} <= loading
    table = format_table(report)
    assert "| kd | optimized |" in table and "×naive" in table


def test_peak_memory_is_reported_on_linux(harness):
    rows = harness.measure("aug", {"optimized": default_variant("cpu")}, rounds=1, warmup=0)
    if Path("/proc/self/clear_refs").exists():
        assert rows[0].peak_mem_mb is not None and rows[0].peak_mem_mb >= 0


def test_defaults_are_the_fast_combination():
    cpu = default_variant("cpu")
    assert (cpu.attn, cpu.padding, cpu.alignment, cpu.precision, cpu.compile) == (
        "sdpa", "dynamic", "precomputed", "fp32", False)
    assert cpu.optimizer == "foreach" and not cpu.reference_loss
    assert (NAIVE.attn, NAIVE.padding, NAIVE.optimizer, NAIVE.precision, NAIVE.alignment) == (
        "eager", "fixed", "plain", "fp32", "walk")
    kd, ev = variants_for("kd", "cpu"), variants_for("eval", "cpu")
    for name, variant in kd.items():  # each ablation flips exactly one feature of the optimized step
        if name not in ("optimized", "naive"):
            assert sum(a != b for a, b in zip(variant.__dict__.values(), kd["optimized"].__dict__.values())) == 1
    assert "walk" not in variants_for("aug", "cpu") and not any(k.startswith("adamw") for k in ev)
    assert "compile" in variants_for("kd", "cpu", compile=True)
    assert set(SIZES) == {"tiny", "small", "base"} and SIZES["base"].hidden == 768 and SIZES["base"].layers == 12


def test_walk_pairs_equal_the_precomputed_pairs(harness):
    """The per-step walk (naive) selects exactly the pairs the dataset precomputed, in the dynamic layout too."""
    fixed, dynamic = harness.batches["fixed"][0], harness.batches["dynamic"][0]
    apply, align = harness.walk(0)
    for batch in (fixed, dynamic):
        pairs = walk_to_pairs(apply, align, 128, batch["input_ids"].shape[1], batch["teacher_input_ids"].shape[1])
        ours = sorted(zip(*(batch[k].tolist() for k in ("kd_batch", "kd_student_pos", "kd_teacher_pos", "kd_component"))))
        theirs = sorted(zip(*(pairs[k].tolist() for k in ("kd_batch", "kd_student_pos", "kd_teacher_pos", "kd_component"))))
        assert ours == theirs


def test_reference_loss_equals_the_pooled_loss(harness):
    """The naive step's masked 178-slot loss and cvil's index-pair pooled loss are the same number."""
    from cvil.distill.kd_losses import distillation_loss

    batch = harness.batches["fixed"][0]
    apply, align = harness.walk(0)
    gen = torch.Generator().manual_seed(0)
    shape = (batch["input_ids"].shape[0], batch["attention_mask"].shape[1], 16)
    student = tuple(torch.randn(shape, generator=gen) for _ in range(5))
    teacher = tuple(torch.randn(shape, generator=gen) for _ in range(5))
    ref = reference_kd_loss(student, teacher, apply, align)
    ours = distillation_loss(student, teacher, batch).total
    assert float(ref) == pytest.approx(float(ours), rel=1e-5)


def test_reference_walk_matches_the_module_walk():
    from cvil.inputs.alignment import tag_alignment

    teacher = ["[CLS]", "what", "?", "[SEP]", "dog", "cat", "##s", "[SEP]"]
    student = ["[CLS]", "nani", "[SEP]", "dog", "ca", "##t", "##s", "[SEP]"]
    apply, align = reference_get_align(teacher, student, total=140, text=128)
    text = apply[:128].nonzero().flatten().tolist()
    assert text == [0] + sorted(s for s, _ in tag_alignment(teacher, student))
    assert all(int(align[s]) == t for s, t in tag_alignment(teacher, student))
    assert apply[128:].all() and align[128:].tolist() == list(range(128, 140))


def test_cli_registers_throughput():
    from bench.cli import build_parser

    args = build_parser(["throughput"]).parse_args(["throughput", "--size", "small", "--steps", "3", "--compile",
                                                    "--json", "x.json", "--precision", "bf16"])
    assert (args.size, args.steps, args.compile, str(args.json_out), args.precision) == ("small", 3, True, "x.json",
                                                                                         "bf16")


# --------------------------------------------------------------------------------------------------- FLOPs
def test_flops_formula_against_a_hand_computation():
    # BERT-base: per layer 4*768^2 + 2*768*3072 = 7,077,888 matmul weights; 12 layers = 84,934,656
    base = flops.ModelShape(hidden=768, layers=12, intermediate=3072, img_dim=2054, num_labels=3129)
    assert base.encoder_matmul_params == 84_934_656
    seq = 128 + 50
    fwd = 2 * 84_934_656 * seq + 4 * 12 * 768 * seq**2 + 2 * 2054 * 768 * 50 + 2 * (768**2 + 768 * 3129)
    assert flops.forward_flops(base, 128, 50) == fwd
    kd = flops.step_flops("kd", base, [128], 50, base, [128])
    assert kd == 4 * fwd
    assert kd / 1e9 == pytest.approx(126.3, abs=0.2)  # the anchors' back-of-envelope: ≈126 GFLOP per sample
    assert flops.step_flops("aug", base, [128, 10], 50) == 3 * (fwd + flops.forward_flops(base, 10, 50))
    assert flops.step_flops("eval", base, [128], 50) == fwd
    # a small hand case: h=2, L=1, i=4, img 3, 1 label, 1 text token + 1 region (S = 2)
    toy = flops.ModelShape(hidden=2, layers=1, intermediate=4, img_dim=3, num_labels=1)
    assert flops.forward_flops(toy, 1, 1) == 2 * (16 + 16) * 2 + 4 * 2 * 4 + 2 * 3 * 2 + 2 * (4 + 2)
    with pytest.raises(ValueError):
        flops.step_flops("kd", toy, [1], 1)


def test_peak_table_and_mfu():
    assert flops.peak_flops("NVIDIA H200", "bf16") == 989e12
    assert flops.peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert flops.peak_flops("NVIDIA A100-SXM4-80GB", "fp32", tf32=True) == 156e12
    assert flops.peak_flops("Some GPU", "bf16") is None
    assert flops.mfu(989e12, 2.0, 989e12) == pytest.approx(0.5)
    assert flops.mfu(1.0, 1.0, None) is None


# ------------------------------------------------------------------------------------------------- the gate
def test_ratio_gate_passes_above_and_fails_below_the_floor():
    ok = ratio_decision([2.9, 3.0, 2.6, 3.1], floor=1.4)
    assert ok.passed and ok.figures["median_ratio"] == pytest.approx(2.95)
    bad = ratio_decision([1.1, 1.3, 1.2], floor=1.4)
    assert not bad.passed and "SPEED REGRESSION" in bad.message and "1.20x" in bad.message
    assert ratio_decision([1.4], floor=1.4).passed
    assert not ratio_decision([], floor=1.4).passed


def test_base_gate_needs_significance_and_a_large_slowdown():
    base = [0.40, 0.41, 0.39, 0.42, 0.40, 0.41, 0.40, 0.39, 0.41, 0.40]
    slower = [t * 1.5 for t in base]
    failed = base_decision(base, slower)
    assert not failed.passed and failed.figures["p_value"] < 0.05 and failed.figures["slowdown"] == pytest.approx(0.5)
    assert "slower" in failed.message
    # significant but small (10 %): tolerated
    small = base_decision(base, [t * 1.10 for t in base])
    assert small.passed and small.figures["p_value"] < 0.05 and "tolerance" in small.message
    # large median shift but not significant (3 rounds of noise): passes
    noisy = base_decision([0.4, 1.0, 0.4], [0.6, 0.5, 1.2])
    assert noisy.passed and noisy.figures["p_value"] >= 0.05
    # faster candidate: passes
    assert base_decision(base, [t * 0.7 for t in base]).passed
    assert base_decision([0.1], [0.2]).passed  # too few rounds: skipped
    table = format_gate([failed, Decision("ratio", True, "", {"median_ratio": 3.0})], [])
    assert "| base | FAIL |" in table and "| ratio | PASS |" in table


def test_gpu_check_script_lints_and_skips_without_cuda():
    script = ROOT / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the real checks")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "no CUDA device" in done.stdout
    assert not list(ROOT.glob("gpu_check_out"))  # nothing written when skipped


def test_variant_is_hashable_and_frozen():
    v = Variant()
    with pytest.raises(AttributeError):
        v.attn = "eager"  # type: ignore[misc]
    assert hash(v) == hash(Variant())


def test_the_speed_gate_copies_a_self_contained_harness(tmp_path):
    """`--base` times the base commit with a copy of this harness (`HARNESS_FILES`): the copy must import alone."""
    import shutil
    import sys

    from bench.throughput import speed_gate

    package = tmp_path / speed_gate.HARNESS_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in speed_gate.HARNESS_FILES:
        shutil.copy2(ROOT / "bench" / "throughput" / name, package / name)
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(tmp_path)!r}]; "
            f"import {speed_gate.HARNESS_PACKAGE}.speed_gate, {speed_gate.HARNESS_PACKAGE}.harness as t; "
            "assert t.Harness.__module__.startswith('cvil_speed_harness.'), t.Harness.__module__")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
