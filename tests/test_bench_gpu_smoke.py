"""benchmarks/bench_gpu.py runs end to end on a CPU with --tiny (2 layers): the GPU benchmark is ready to
run when a GPU is, and its JSON carries every figure issue 17 asks for."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_runs_tiny_on_cpu(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    bench.main(["--tiny", "--device", "cpu", "--dtype", "float32", "--batch", "2", "--tokens", "12", "--short", "2",
                "--prompt-tokens", "8", "--repeats", "1", "--bandwidth-gbs", "10", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["model"]["config"]["num_hidden_layers"] == 2
    assert set(report["decode_tok_s"]["median"]) == {"plain_b1", "read_b1", "plain_b2", "read_b2", "bare_b1",
                                                     "bare_b2"}
    figures = [*report["value_reading"].values(), *report["batching"].values(), report["bandwidth"]["ceiling_tok_s"],
               report["bandwidth"]["bare_b1_of_ceiling"]]
    assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in figures), figures
    # the ceiling is bandwidth / bytes read per step, which excludes the (untied) input embedding
    bw = report["bandwidth"]
    assert bw["weight_bytes_per_token"] < bw["weight_bytes"]
    assert math.isclose(bw["ceiling_tok_s"], 10e9 / bw["weight_bytes_per_token"])
    assert report["environment"]["torch"] and report["args"]["tiny"] is True
