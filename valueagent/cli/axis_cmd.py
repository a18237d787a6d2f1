"""CLI commands: `axis build`, `axis eval`, `axis score`, `axis import`, `axis compare`."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import typer

from valueagent.cli import checks
from valueagent.cli.common import AXIS_OPT, DEVICE_OPT, DTYPE_OPT, MODEL_OPT, fail

_BUILD_OUT = typer.Option(
    None, "--out", help="Axis path (.safetensors); default: axes/<model>.safetensors in the user cache "
    "($VALUEAGENT_CACHE, else ~/.cache/valueagent), never the package's shipped axis."
)
_REPORT_DIR = typer.Option(None, "--report-dir", help="Where the report JSON and PNG go (default: "
                           "<axis stem>.report/ beside the axis).")
_WORK_DIR = typer.Option(
    None, "--work-dir", help="Resumable cache of rollouts and activations (default: axis_build/ in the user "
    "cache; delete it to start over)."
)
_OVERWRITE = typer.Option(False, "--overwrite", help="Write over an existing axis or report (the shipped axis "
                          "or a committed report included).")
_TASKS = typer.Option(
    None, "--tasks", help="Training coding tasks for the probe (never HumanEval; default: the package's)."
)
_EPISODES_DIR = typer.Option(None, "--episodes-dir", help="Frozen episodes and contrasts (default: the "
                             "package's).")
_DISTINCTIONS_DIR = typer.Option(None, "--distinctions-dir", help="Frozen distinction data (default: the "
                                 "package's).")
_EPISODES = typer.Option(40, "--episodes", min=10, help="Labelled episodes read (60% training criteria, 40% "
                         "held-out criteria).")
_CONTRASTS = typer.Option(16, "--contrast-groups", min=2, help="Matched success/failure groups read (half "
                          "training, half held out); each text is ~1k tokens.")
_CODE_PAIRS = typer.Option(None, "--code-pairs-per-kind", min=1, help="Code pairs per mutation kind for "
                           "selection, test and the code contrast (default: 12 selection, all the rest as test, 8 "
                           "training).")
_DISTINCTION_PAIRS = typer.Option(None, "--distinction-pairs", min=2, help="Confidence pairs and backtracking "
                                  "groups read (default: 40 and 30).")
_MAX_TEXT_TOKENS = typer.Option(4096, "--max-text-tokens", min=16, help="Longest text read, in tokens (a longer "
                                "one is an error: it bounds activation memory).")
_JSONL_ARG = typer.Argument(..., help='JSONL with {"id", "prompt", "completion"} per line.')
_ARRAY_ARG = typer.Argument(
    ..., help="The paper's value_axis.npy: (num_layers + 1, hidden), indexed like hidden_states."
)
_IMPORT_OUT = typer.Option(None, "--out", help="Output .safetensors (default: <model slug>.safetensors).")

axis_app = typer.Typer(help="Build, validate, import and read value axes.", no_args_is_help=True)


def _load(model: str, device: str | None, dtype: str | None) -> Any:
    from valueagent.runtime.loading import load_model

    try:
        return load_model(model, device=device, dtype=dtype)
    except (ValueError, OSError, RuntimeError) as exc:
        fail(str(exc))


def _cpu_dtype(device: str | None, dtype: str | None) -> str | None:
    """float32 on a CPU unless asked otherwise: bf16 matmuls are 20-70x slower on CPUs without bf16 units."""
    from valueagent.runtime.loading import resolve_device

    try:
        return dtype or ("float32" if resolve_device(device) == "cpu" else None)
    except ValueError as exc:
        fail(str(exc))


def _data_paths(tasks: Path | None, episodes_dir: Path | None, distinctions_dir: Path | None,
                work_dir: Path | None) -> dict[str, Any]:
    """BuildConfig fields for the data an axis build or eval reads (the package's unless named) and its
    cache directory, each checked before the model loads."""
    from valueagent.axis.build import BuildConfig

    default = BuildConfig()
    for path, option, what in ((tasks, "--tasks", "the training coding tasks"),
                               (episodes_dir, "--episodes-dir", "the frozen episodes and contrasts"),
                               (distinctions_dir, "--distinctions-dir", "the frozen distinction data")):
        if path is not None:
            checks.existing(path, option=option, what=what)
    if work_dir is not None:
        checks.directory(work_dir, option="--work-dir")
    return {"tasks_path": str(tasks or default.tasks_path), "episodes_dir": str(episodes_dir or default.episodes_dir),
            "distinctions_dir": str(distinctions_dir or default.distinctions_dir),
            "work_dir": str(work_dir or default.work_dir)}


def _outputs(model: str, out: Path | None, report_dir: Path | None, overwrite: bool) -> tuple[Path | None, Path | None]:
    """Where a build writes, checked before the model loads: never over an existing axis or report unless
    ``--overwrite``. ``(None, None)``: the defaults, known once the model id is (a server spec)."""
    from valueagent.agent.shipped import expected_model_id
    from valueagent.axis.build import check_outputs, default_out, default_report_dir

    model_id = expected_model_id(model)
    target = out or (default_out(model_id) if model_id else None)
    if target is None:
        return None, report_dir
    rdir = report_dir or default_report_dir(target)
    checks.directory(target.parent, option="--out")
    checks.directory(rdir, option="--report-dir")
    try:
        check_outputs(target, rdir, overwrite=overwrite)
    except FileExistsError as exc:
        fail(str(exc))
    return target, rdir


def _axis_for(axis: str, model_id: str) -> Any:
    """Load ``axis`` (a path, ``default`` = the shipped axis for ``model_id``, ``head`` = its shipped head)."""
    from valueagent.runtime.artifact import axis_path, load_axis

    try:
        path = axis_path(model_id, axis)
        if path is None:
            fail(f"no axis ships for {model_id}; build one with `valueagent axis build --model ... --out PATH` "
                 "and pass --axis PATH")
        return load_axis(path)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


def _data_sizes(episodes: int, contrast_groups: int, code_pairs: int | None, distinction_pairs: int | None
                ) -> dict[str, Any]:
    """BuildConfig fields for how much data a build or an eval reads (None: the defaults)."""
    sizes: dict[str, Any] = {"episodes": episodes, "contrast_groups": contrast_groups}
    if code_pairs is not None:
        sizes |= {"code_dev_pairs_per_kind": code_pairs, "code_test_pairs_per_kind": code_pairs,
                  "code_train_pairs_per_kind": code_pairs}
    if distinction_pairs is not None:
        sizes |= {"confidence_pairs": distinction_pairs, "backtracking_groups": distinction_pairs}
    return sizes


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        fail(f"no such file: {path}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{path}:{n}: not JSON ({exc})")
        if not {"id", "prompt", "completion"} <= set(row):
            fail(f"{path}:{n}: each line needs \"id\", \"prompt\" (the user turn) and \"completion\"")
        rows.append(row)
    return rows


@axis_app.command("build")
def build_cmd(
    model: str = MODEL_OPT,
    out: Path | None = _BUILD_OUT,
    episodes: int = _EPISODES,
    contrast_groups: int = _CONTRASTS,
    code_pairs: int | None = _CODE_PAIRS,
    distinction_pairs: int | None = _DISTINCTION_PAIRS,
    report_dir: Path | None = _REPORT_DIR,
    work_dir: Path | None = _WORK_DIR,
    overwrite: bool = _OVERWRITE,
    tasks: Path | None = _TASKS,
    episodes_dir: Path | None = _EPISODES_DIR,
    distinctions_dir: Path | None = _DISTINCTIONS_DIR,
    samples: int = typer.Option(2, "--samples", min=0, help="Sampled attempts per training task (0: no rollouts, "
                                "no probe; the slowest part of a build)."),
    max_text_tokens: int = _MAX_TEXT_TOKENS,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
) -> None:
    """Build a value axis: episodes -> activations -> estimators -> validation -> the artifact + report.

    On a CPU the model is loaded in float32 unless --dtype says otherwise: CPUs without bf16 matrix
    units run bfloat16 matmuls 20-70x slower (measured on the project's 2-core machines)."""
    from valueagent.axis.build import BuildConfig, build_axis

    paths = _data_paths(tasks, episodes_dir, distinctions_dir, work_dir)
    out, report_dir = _outputs(model, out, report_dir, overwrite)
    loaded = _load(model, device, _cpu_dtype(device, dtype))
    sizes = _data_sizes(episodes, contrast_groups, code_pairs, distinction_pairs)
    cfg = BuildConfig(**sizes, **paths, samples=samples, max_tokens=max_text_tokens, overwrite=overwrite,
                      report_dir=str(report_dir) if report_dir else None, out=str(out) if out else None,
                      command=" ".join(["valueagent", *sys.argv[1:]]))
    try:
        result = build_axis(loaded, cfg)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(result["summary"], indent=2))


@axis_app.command("eval")
def eval_cmd(
    axis: str = AXIS_OPT,
    model: str = MODEL_OPT,
    episodes: int = _EPISODES,
    contrast_groups: int = _CONTRASTS,
    code_pairs: int | None = _CODE_PAIRS,
    distinction_pairs: int | None = _DISTINCTION_PAIRS,
    tasks: Path | None = _TASKS,
    episodes_dir: Path | None = _EPISODES_DIR,
    distinctions_dir: Path | None = _DISTINCTIONS_DIR,
    work_dir: Path | None = _WORK_DIR,
    max_text_tokens: int = _MAX_TEXT_TOKENS,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Read an axis on the three distinctions and held-out episodes, each next to its random control.

    Activations are cached in --work-dir (shared with `axis build`, so texts it read are not re-run);
    on a CPU the model is loaded in float32 unless --dtype says otherwise."""
    from valueagent.axis.build import BuildConfig, evaluate_axis

    what = "axis eval (mean cosines on the synthetic distinctions)"
    checks.axis(axis, model=model, cosine_only=what)
    paths = _data_paths(tasks, episodes_dir, distinctions_dir, work_dir)
    loaded = _load(model, device, _cpu_dtype(device, dtype))
    ax = _axis_for(axis, loaded.model_id)
    if ax.reading != "cosine":  # `head` of a model id the early check could not resolve without loading it
        checks.cosine_only_axis(ax, "--axis", axis, what)
    sizes = _data_sizes(episodes, contrast_groups, code_pairs, distinction_pairs)
    cfg = BuildConfig(**sizes, **paths, max_tokens=max_text_tokens)
    try:
        result = evaluate_axis(loaded, ax, cfg)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result))
        return
    for name, d in result["distinctions"].items():
        flat = {k: v for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        typer.echo(f"{name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in flat.items()))


@axis_app.command("score")
def score_cmd(
    file: Path = _JSONL_ARG,
    axis: str = AXIS_OPT,
    model: str = MODEL_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    as_json: bool = typer.Option(False, "--json", help="One JSON object {id, value, n_tokens} per line (default: "
                                 "a tab-separated line per completion)."),
) -> None:
    """Teacher-forced value of each completion, one line per input line (``--json``: JSON lines)."""
    from valueagent.axis.reading import read_completions
    from valueagent.runtime.artifact import AxisMismatchError

    rows = _read_jsonl(file)
    checks.axis(axis, model=model)
    loaded = _load(model, device, _cpu_dtype(device, dtype))
    ax = _axis_for(axis, loaded.model_id)
    items = [([{"role": "user", "content": r["prompt"]}], r["completion"]) for r in rows]
    try:
        readings = read_completions(loaded.model, loaded.tokenizer, loaded.model_id, ax, items)
    except AxisMismatchError as exc:
        fail(str(exc))
    for row, rd in zip(rows, readings, strict=True):
        value, n = (None, 0) if rd is None else (rd.value, rd.n_tokens)
        if as_json:
            typer.echo(json.dumps({"id": row["id"], "value": value, "n_tokens": n}))
        else:
            typer.echo(f"{row['id']}\t{'—' if value is None else f'{value:+.4f}'}\t{n} tokens")


@axis_app.command("import")
def import_cmd(
    array: Path = _ARRAY_ARG,
    model: str = typer.Option(..., "--model", help="The model id the array belongs to, e.g. Qwen/Qwen3-8B."),
    layer: int | None = typer.Option(None, "--layer", help="Layer to read (default: 21 for a 37-entry "
                                     "array, the paper's; else the same relative depth)."),
    out: Path | None = _IMPORT_OUT,
    residual_norm: float | None = typer.Option(None, "--residual-norm", help="Mean residual norm at the layer, "
                                               "if known (else measured when the axis is first used)."),
) -> None:
    """Convert a raw (num_layers + 1, hidden) array into an axis artifact, without the model's weights."""
    import dataclasses

    import numpy as np

    from valueagent.runtime.artifact import axis_file_name, axis_from_array, save_axis

    if not array.exists():
        fail(f"no such file: {array}")
    try:
        arr = np.load(array)
    except (ValueError, OSError) as exc:
        fail(f"{array} is not a numpy array file: {exc}")
    if arr.ndim != 2 or arr.shape[0] < 2:
        fail(f"expected a (num_layers + 1, hidden) array indexed like hidden_states, got shape {arr.shape}")
    n_layers = arr.shape[0] - 1
    chosen = layer if layer is not None else round(21 * n_layers / 36)
    try:
        ax = axis_from_array(arr, model_id=model, layer=chosen, estimator="imported:diff_of_means",
                             notes=f"imported from {array.name}; layer {chosen} of {n_layers}")
    except ValueError as exc:
        fail(str(exc))
    if residual_norm is not None:
        ax = dataclasses.replace(ax, residual_norm_mean=float(residual_norm))
    target = out or Path(axis_file_name(model))
    save_axis(ax, target)
    typer.echo(json.dumps({"out": str(target), "model_id": model, "layer": chosen, "num_layers": n_layers,
                           "hidden_size": int(arr.shape[1]), "sha256": ax.sha256}))


@axis_app.command("compare")
def compare_cmd(
    file: Path = _JSONL_ARG,
    model_a: str = typer.Option(..., "--model-a", help="Reference checkpoint (spec)."),
    model_b: str = typer.Option(..., "--model-b", help="Checkpoint to compare (spec)."),
    axis_a: str = typer.Option("default", "--axis-a", help="Axis for A (path or `default`)."),
    axis_b: str = typer.Option("default", "--axis-b", help="Axis for B (path or `default`; use A's axis "
                               "for a fine-tune of A: same shape and id is then required)."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Value shift B - A over the same completions, with a bootstrap interval."""
    from valueagent.axis.compare import Side, value_shift
    from valueagent.runtime.artifact import AxisMismatchError

    rows = _read_jsonl(file)
    checks.axis(axis_a, option="--axis-a")
    checks.axis(axis_b, option="--axis-b")
    items = [([{"role": "user", "content": r["prompt"]}], r["completion"]) for r in rows]
    sides = [
        Side(name=f"{name}:{spec}", load=partial(_load, spec, device, _cpu_dtype(device, dtype)),
             axis=partial(_axis_for, ax))
        for name, spec, ax in (("a", model_a, axis_a), ("b", model_b, axis_b))
    ]
    try:
        result = value_shift(items, sides[0], sides[1])
    except (AxisMismatchError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        s = result["value_shift"]
        typer.echo(f"value shift B - A over {result['n']} completions: {s['mean']:+.4f} "
                   f"[{s['lo']:+.4f}, {s['hi']:+.4f}]")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(axis_app, name="axis")
