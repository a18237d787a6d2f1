"""A user outside the repository: the wheel, installed into a fresh virtualenv, runs `axis eval`, `run` and
`eval humaneval` and `eval mbpp` from another folder, on a tiny local model saved with its axis (slow: builds a wheel).

The fresh environment sees this environment's packages (torch and the rest) through a ``.pth`` line, so
nothing is downloaded; its ``.pth`` files are not run, so the repository's editable install stays out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _sh(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _source_tree(dest: Path) -> Path:
    """The files git would commit (tracked, and untracked but not ignored), as a clean clone has them."""
    listed = _sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    for rel in filter(None, listed.stdout.split("\0")):
        src = ROOT / rel
        if not (rel.startswith("valueagent/") or "/" not in rel) or src.is_symlink() or not src.exists():
            continue  # the wheel is made of the package and the top-level files
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_tree(tmp / "src")
    built = _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
                src)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp / "dist").glob("valueagent-*.whl")
    env_dir = tmp / "env"
    made = _sh(sys.executable, "-m", "venv", "--without-pip", env_dir)
    assert made.returncode == 0, made.stderr
    python = env_dir / "bin" / "python"
    purelib = Path(_sh(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    (purelib / "_host_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    got = _sh(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    assert got.returncode == 0, got.stderr[-3000:]
    return {"tmp": tmp, "python": python, "bin": env_dir / "bin", "wheel": wheel}


@pytest.fixture(scope="module")
def tiny(installed: dict[str, Path]) -> dict[str, Path]:
    """A tiny random Qwen3 saved as a local model directory, and an axis made for it."""
    from tests.conftest import build_tiny_qwen3, build_tiny_tokenizer
    from tests.test_backend import make_axis
    from valueagent.runtime.artifact import save_axis

    model_dir = installed["tmp"] / "tiny-model"
    model = build_tiny_qwen3()
    model.save_pretrained(model_dir)
    build_tiny_tokenizer().save_pretrained(model_dir)
    axis = make_axis(model, layer=1, model_id=str(model_dir.resolve()))
    return {"model": model_dir, "axis": save_axis(axis, installed["tmp"] / "tiny.safetensors")}


def _env(installed: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{installed['bin']}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               VALUEAGENT_CACHE=str(installed["tmp"] / "cache"), HF_HUB_OFFLINE="1")
    return env


def test_the_installed_package_is_the_wheel_and_carries_its_data(installed: dict[str, Path]) -> None:
    outside = installed["tmp"] / "elsewhere"
    outside.mkdir(exist_ok=True)
    probe = ("import valueagent, json\n"
             "from valueagent.agent.shipped import calibrations_for, expected_reading\n"
             "from valueagent.axis.datasets import load_data, shipped_data\n"
             "r = expected_reading('embedded', 'default')\n"
             "d = load_data(*shipped_data())\n"
             "print(json.dumps({'file': valueagent.__file__, 'calibrations': [c.variant for c in calibrations_for(r)],"
             " 'episodes': len(d.episodes), 'tasks': len(d.tasks)}))\n")
    res = _sh(installed["python"], "-c", probe, cwd=outside, env=_env(installed))
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout)
    assert Path(got["file"]).resolve().is_relative_to((installed["tmp"] / "env").resolve())
    assert got["calibrations"][0] == "default" and got["episodes"] > 0 and got["tasks"] > 0


def test_axis_eval_run_and_eval_from_another_folder(installed: dict[str, Path], tiny: dict[str, Path]) -> None:
    outside = installed["tmp"] / "user"
    outside.mkdir(exist_ok=True)
    env, va = _env(installed), installed["bin"] / "valueagent"
    model = ["--model", str(tiny["model"]), "--axis", str(tiny["axis"])]  # a tiny BPE: long texts in tokens
    res = _sh(va, "axis", "eval", *model, "--episodes", "10", "--contrast-groups", "2", "--code-pairs-per-kind",
              "1", "--distinction-pairs", "2", "--max-text-tokens", "20000", "--json", cwd=outside, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(json.loads(res.stdout)["distinctions"]) >= {"confidence", "backtracking", "code_correctness"}
    small = ["--limit", "1", "--max-tokens", "24", "--answer-tokens", "16", "--workers", "1", "--concurrency", "1"]
    res = _sh(va, "run", "humaneval", "--policy", "single,value", *model, *small, "--output-dir", "run",
              cwd=outside, env=env)
    assert res.returncode == 2 and "valueagent calibrate" in res.stderr  # no calibration ships for this model
    res = _sh(va, "run", "humaneval", "--policy", "single,value", "--uncalibrated", *model, *small,
              "--output-dir", "run", cwd=outside, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len((outside / "run" / "results.jsonl").read_text().splitlines()) == 2
    res = _sh(va, "eval", "humaneval", "--policies", "single,value", "--uncalibrated", *model, *small,
              "--n-boot", "100", "--output-dir", "ev", cwd=outside, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (outside / "ev" / "samples" / "value.jsonl").is_file() and (outside / "ev" / "report.md").is_file()
    assert small[:2] == ["--limit", "1"]
    res = _sh(va, "eval", "mbpp", "--split", "test", "--limit", "2", "--policies", "single", *model,
              *small[2:], "--n-boot", "100", "--output-dir", "mb",
              cwd=outside, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads((outside / "mb" / "config.json").read_text())
    assert config["benchmark"]["benchmark"] == "mbpp" and config["dataset"]["n_tasks"] == 2
    lines = [json.loads(x) for x in (outside / "mb" / "samples" / "single.jsonl").read_text().splitlines()]
    assert [x["task_id"] for x in lines] == ["Mbpp/11", "Mbpp/12"] and all("solution" in x for x in lines)
    assert not (outside / "tasks").exists() and not (outside / "evals").exists()
