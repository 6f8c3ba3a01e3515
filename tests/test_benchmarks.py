"""The GPU suite's smoke mode runs on the CPU, so the one-command benchmark does not rot."""

import json
import math
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def gpu_suite():
    sys.path.insert(0, BENCHMARKS)
    try:
        import gpu_suite

        yield gpu_suite
    finally:
        sys.path.remove(BENCHMARKS)


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_gpu_suite_smoke_writes_json_markdown_and_plot(gpu_suite, tmp_path):
    # A budget no machine exhausts, so nothing is skipped (the budgets have a test below).
    out = gpu_suite.main(["--smoke", "--out", str(tmp_path), "--steps-per-dispatch", "2",
                          "--total-seconds", "100000"])
    device = out["device"]
    stem = tmp_path / out["plot"][:-len(".png")]
    payload = json.loads(stem.with_suffix(".json").read_text())
    markdown = stem.with_suffix(".md").read_text()
    png = stem.with_suffix(".png").read_bytes()
    assert device and payload["device"] == device and device in markdown
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert payload["steps_per_dispatch"] == 2
    assert all(_finite(payload["matmul_gflops"][p]) for p in ("highest", "high", "default"))

    acc = payload["accuracy"]
    assert acc["steps_taken"] >= 1 and acc["snapshots"]
    assert _finite(acc["snapshots"][-1]["acc_mean"]) and _finite(acc["random_acc_mean"])
    for section, keys in [("frepo_cost", ("ms_per_step", "xla_temp_MB", "gflop_per_step",
                                          "fraction_of_matmul", "peak_rss_MB")),
                          ("rcig", ("s_per_step", "xla_temp_MB")),
                          ("ratbptt", ("s_per_step", "xla_temp_MB"))]:
        rows = payload[section]["rows"]
        assert rows, f"{section}: no configuration measured"
        for row in rows:
            assert "error" not in row, row
            assert all(_finite(row[k]) for k in keys), (section, row)
    for heading in ("accuracy against wall time", "FRePo meta-step cost", "RCIG meta-step cost",
                    "RaT-BPTT meta-step cost"):
        assert heading in markdown


def test_gpu_suite_sections_skip_what_their_budget_leaves_no_time_for(gpu_suite):
    calls = []

    def measure(config):
        calls.append(config)
        return {"value": 1.0}

    section = gpu_suite._run_configs("demo", [{"n": 1}, {"n": 2}], gpu_suite.Budget(60.0), measure)
    assert [r["value"] for r in section["rows"]] == [1.0, 1.0] and section["skipped"] == []
    section = gpu_suite._run_configs("demo", [{"n": 1}, {"n": 2}], gpu_suite.Budget(-1.0), measure)
    assert section["rows"] == [] and section["skipped"] == [{"n": 1}, {"n": 2}]
    assert len(calls) == 2

    def failing(config):
        raise MemoryError("out of memory")

    section = gpu_suite._run_configs("demo", [{"n": 1}], gpu_suite.Budget(60.0), failing)
    assert section["rows"][0]["error"] == "MemoryError: out of memory"
