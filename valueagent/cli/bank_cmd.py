"""CLI: `bank build` (sample N candidates per task, with readings and verdicts) and `bank replay` (score
whole-answer policies from a bank, paired, in seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from valueagent.cli.common import (
    AXIS_OPT,
    BACKEND_OPT,
    DEVICE_OPT,
    DTYPE_OPT,
    MODEL_OPT,
    PREFIX_CACHE_OPT,
    QUANTIZE_OPT,
    WORKERS_OPT,
    fail,
)

bank_app = typer.Typer(help="A replayable sample bank: build it once per model, replay policies from it.",
                       no_args_is_help=True)


def weights_label(model: str) -> str:
    """How the weights were loaded: the embedded models are GGUF Q4_K_M repacks dequantized at load."""
    return "Q4_K_M GGUF, dequantized at load" if model.startswith("embedded") else "as published (checkpoint dtype)"


@bank_app.command("build")
def build(
    source: Annotated[str, typer.Argument(help="`humaneval`, `mbpp` or a HumanEval-schema .jsonl file.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Bank directory (resumable).")],
    samples: int = typer.Option(8, "--samples", "-n", help="Fresh samples per task besides the greedy answer."),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens"),
    concurrency: int = typer.Option(2, "--concurrency", help="Tasks in flight, each a batch of N + 1 rows."),
    limit: int | None = typer.Option(None, "--limit", min=1),
    split: str = typer.Option("all", "--split", help="A benchmark's split (mbpp: test, validation, train, "
                              "train+validation; humaneval: eval, calibration) or all."),
    resume: bool = typer.Option(False, "--resume", help="Continue a bank in --output-dir (same settings)."),
    reverse: bool = typer.Option(
        False, "--reverse", help="Take the tasks last to first: a second builder on the same --output-dir with "
        "--resume --reverse meets the first in the middle (each skips what the other has written)."),
    prefix_cache_mb: int = PREFIX_CACHE_OPT,  # a bank's prompts share only the chat template: 0 costs little
    model: str = MODEL_OPT,
    axis: str = AXIS_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    quantize: str | None = QUANTIZE_OPT,
    engine: str = BACKEND_OPT,
    workers: int = WORKERS_OPT,
) -> None:
    """Sample the greedy answer and N fresh samples for every task, with per-token value, log-prob,
    entropy and top-k log-probs, visible-test verdicts and the hidden verdict; one file per task."""
    from valueagent.bank.build import BankSpec, build_bank, check_output_dir, manifest_for
    from valueagent.bank.store import BankError
    from valueagent.cli.agent_cmd import load_tasks

    try:
        spec = BankSpec(samples=samples, temperature=temperature, top_p=top_p, seed=seed,
                        max_new_tokens=max_new_tokens, concurrency=concurrency)
    except BankError as exc:
        fail(str(exc))
    try:
        check_output_dir(output_dir, resume)
    except BankError as exc:
        fail(str(exc))
    tasks = load_tasks(source, split=split, limit=limit, task_ids=None)
    if not tasks:
        fail(f"{source} holds no tasks: give a file with at least one HumanEval-schema line")
    if reverse:
        tasks = tasks[::-1]
    from valueagent.cli.common import load_backend_or_fail
    from valueagent.sandbox import Sandbox

    backend = load_backend_or_fail(model, axis, device, dtype, max_batch=(samples + 1) * concurrency,
                                   quantize=quantize, prefix_cache_mb=prefix_cache_mb, engine=engine)
    from valueagent.agent.prompts import PromptConfig
    from valueagent.benchmarks import BENCHMARKS

    tasks_source = (source if split == "all" else f"{source} --split {split}") if source in BENCHMARKS \
        else str(Path(source))
    manifest = manifest_for(backend, spec, PromptConfig(), tasks_source, weights_label(model))
    sandbox = Sandbox(workers=workers)

    def report(progress: dict[str, Any], written: int, todo: int) -> None:
        eta = progress["eta_s"]
        typer.echo(f"bank {progress['done']}/{progress['total']} {progress['last']} "
                   f"{progress['tokens_per_s']} tok/s, ~{eta // 60} min {eta % 60} s left", err=True)

    try:
        written, skipped = asyncio.run(build_bank(tasks, backend=backend, sandbox=sandbox, root=output_dir,
                                                  spec=spec, manifest=manifest, resume=resume, on_task=report))
    except BankError as exc:
        fail(str(exc))
    finally:
        sandbox.close()
        backend.close()
    typer.echo(f"bank {output_dir}: {written} tasks written, {skipped} already there (or written meanwhile by "
               "another builder)", err=True)


@bank_app.command("replay")
def replay_cmd(
    bank_dir: Annotated[Path, typer.Argument(help="A bank directory made by `valueagent bank build`.")],
    policies: str | None = typer.Option(None, "--policies", help="Comma-separated replay policies (default: all)."),
    calibration_ids: str | None = typer.Option(
        None, "--calibration-ids", help="Comma-separated task ids that fit the probe and thresholds (default: "
        "HumanEval's frozen calibration split); every other task is evaluated."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random control."),
    risk: float = typer.Option(0.05, "--risk", help="Conformal risk of the calibrated rules (0 < risk < 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    gate_config_out: Annotated[Path | None, typer.Option(
        "--gate-config-out", help="Write the calibration of the live search policies (thresholds, probe) here, "
        "for `valueagent run|eval --gate-config FILE`.")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Also write the JSON result (and a frontier PNG "
                                                "and a Markdown table beside it) here; never inside the bank.")] = None,
    calibration_bank: Annotated[Path | None, typer.Option(
        "--calibration-bank", help="Calibrate on every task of this other bank of the same model (e.g. MBPP "
        "train+validation) and evaluate every task of BANK_DIR.")] = None,
    scores: Annotated[list[Path] | None, typer.Option(
        "--scores", help="Per-sample scores of this bank written by `bank heads` (LABEL-scores.json): each head "
        "ranks beside the built-in signals.")] = None,
    scored_only: bool = typer.Option(False, "--scored-only", help="Replay only the tasks the --scores files cover "
                                     "(an interim answer while a bank is still being built or encoded)."),
) -> None:
    """Score whole-answer policies (rank, sequential gate, early stop, best of N by each signal, sample order,
    random, oracle) from a bank, paired, with intervals; thresholds and fitted signals from calibration tasks."""
    from valueagent.bank.replay import ReplayConfig, check_policies, replay
    from valueagent.bank.store import BankError, load_bank

    if not 0 < risk < 1:
        fail(f"--risk {risk} must lie in (0, 1), e.g. 0.05")
    names = tuple(p.strip() for p in policies.split(",") if p.strip()) if policies else None
    calib = tuple(t.strip() for t in calibration_ids.split(",") if t.strip()) if calibration_ids else None
    if output is not None and output.resolve().is_relative_to(bank_dir.resolve()):
        fail(f"--output {output} lies inside the bank {bank_dir}: a replay never writes to a bank; choose a "
             "path outside it")
    if calibration_bank is not None and calib is not None:
        fail("--calibration-bank and --calibration-ids both choose the calibration tasks: give one")
    try:
        bank = load_bank(bank_dir)
        other = load_bank(calibration_bank) if calibration_bank is not None else None
        scored = read_scores(scores or [], *([bank, other] if other is not None else [bank]))
        if names is not None:
            check_policies(names, sorted({n for per in scored.values() for n in per}))
        result = replay(bank, ReplayConfig(seed=seed, risk=risk, calibration=calib, policies=names, scored=scored,
                                           calibration_bank=other, scored_only=scored_only))
    except BankError as exc:
        fail(str(exc))
    if gate_config_out is not None:
        gate_config_out.parent.mkdir(parents=True, exist_ok=True)
        gate_config_out.write_text(json.dumps(result["gate_config"], indent=1) + "\n")
    if output is not None:
        from valueagent.bank.report import write_report

        write_report(result, output)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return
    from valueagent.bank.report import render_text

    typer.echo(render_text(result))


def source_tasks(tasks_source: str) -> dict[str, Any]:
    """The tasks a bank was sampled from, by id, from its manifest's ``tasks_source`` (``mbpp --split test``,
    ``humaneval``, or a task file's path)."""
    from valueagent.cli.agent_cmd import load_tasks

    name, _, split = tasks_source.partition(" --split ")
    return {t.task_id: t for t in load_tasks(name, split=split or "all", limit=None, task_ids=None)}


@bank_app.command("encode")
def encode_cmd(
    bank_dir: Annotated[Path, typer.Argument(help="A bank directory made by `valueagent bank build`.")],
    model: str | None = typer.Option(None, "--model", help="The bank's model (default: found from its manifest: "
                                     "embedded, embedded-1.5b, or its model id)."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = typer.Option("bfloat16", "--dtype", help="Arithmetic of the pass (bfloat16 by default: "
                                     "~2.2x faster than float32 for a prefill on this CPU; recorded)."),
    split: str | None = typer.Option(None, "--split", help="Only the bank's tasks of this split of its benchmark "
                                     "(e.g. eval for a HumanEval bank: heads are scored on it); default: all."),
    reverse: bool = typer.Option(False, "--reverse", help="Last task first: a second encoder on another core "
                                 "meets the first (each skips a task the other has written)."),
) -> None:
    """Residual features of every sample (mean over its generated tokens, and its last token, at every layer)
    from one teacher-forced pass per task; resumable, written to BANK/features/."""
    from valueagent.agent.prompts import PromptConfig, task_messages
    from valueagent.bank.encode import encode_bank
    from valueagent.bank.store import BankError, load_bank, read_manifest
    from valueagent.runtime import embedded

    try:
        man = read_manifest(bank_dir)
        bank = load_bank(bank_dir)
    except BankError as exc:
        fail(str(exc))
    if man.prefill != PromptConfig().prefill:
        fail(f"{bank_dir} was sampled with prefill {man.prefill!r}, not the agent's: it cannot be re-encoded here")
    tasks = source_tasks(man.tasks_source)
    if missing := [r["task_id"] for r in bank if r["task_id"] not in tasks]:
        fail(f"{bank_dir} holds tasks its source {man.tasks_source!r} does not (e.g. {missing[0]})")
    if split is not None:
        from valueagent.benchmarks import benchmark_of

        bench = benchmark_of(r["task_id"] for r in bank)
        if bench is None:
            fail(f"--split {split}: {bank_dir} holds tasks of no known benchmark; drop --split to encode them all")
        try:
            wanted = {t.task_id for t in bench.tasks(split)}
        except ValueError as exc:
            fail(str(exc))
        bank = bank.subset(wanted)
    spec = model or next((k for k, s in embedded.SOURCES.items() if s.model_id == man.model_id), man.model_id)
    from valueagent.runtime.loading import load_model, render_chat

    loaded = load_model(spec, device=device, dtype=dtype)
    prefill = PromptConfig().prefill

    def prompt_ids(task_id: str) -> list[int]:
        messages = task_messages(tasks[task_id].public().to_dict(), PromptConfig())
        text = render_chat(loaded.tokenizer, messages) + prefill
        return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def report(p: dict[str, Any]) -> None:
        typer.echo(f"encode {p['done']}/{p['total']} {p['last']} {p['tokens_per_s']} tok/s, {p['elapsed_s']} s",
                   err=True)

    try:
        written, skipped = encode_bank(bank, loaded=loaded, prompt_ids=prompt_ids, on_task=report, reverse=reverse)
    except BankError as exc:
        fail(str(exc))
    typer.echo(f"encoded {written} tasks of {bank_dir} ({skipped} already encoded)", err=True)


def read_scores(paths: list[Path], *banks: Any) -> dict[str, dict[str, list[float]]]:
    """Merge ``bank heads`` score files of ``banks`` (the replayed one and its calibration bank; a file
    written for any other bank is refused)."""
    from valueagent.bank.encode import manifest_sha256
    from valueagent.bank.store import BankError

    out: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BankError(f"--scores {path} is not a scores JSON ({exc.__class__.__name__}): write it with "
                            "`valueagent bank heads`") from None
        if doc.get("bank_sha256") not in {manifest_sha256(b.root) for b in banks}:
            raise BankError(f"--scores {path} scores another bank than {' or '.join(str(b.root) for b in banks)}: "
                            "pass the files `bank heads` wrote for these banks")
        for tid, per in doc["scores"].items():
            out.setdefault(tid, {}).update(per)
    return out


def _split_of(bank: Any, split: str, item: str) -> Any:
    """The bank's tasks in ``split`` of the benchmark they come from (``--test LABEL=BANK:SPLIT``)."""
    from valueagent.benchmarks import BENCHMARKS

    ids = {r["task_id"] for r in bank}
    bench = next((b for b in BENCHMARKS.values() if all(i.startswith(b.id_prefix) for i in ids)), None)
    if bench is None:
        fail(f"--test {item!r}: the tasks of {bank.root} are not one benchmark's ({', '.join(BENCHMARKS)}), so "
             "they have no split; drop :SPLIT")
    try:
        chosen = {t.task_id for t in bench.tasks(split)} & ids
    except ValueError as exc:
        fail(f"--test {item!r}: {exc}")
    if not chosen:
        fail(f"--test {item!r}: no task of {bank.root} is in {bench.name}'s {split!r} split")
    return bank.subset(chosen)


@bank_app.command("heads")
def heads_cmd(
    fit_bank: Annotated[Path, typer.Argument(help="An encoded MBPP train+validation bank: fits, chooses heads.")],
    test: Annotated[list[str], typer.Option("--test", help="LABEL=BANK[:SPLIT], an encoded bank of never-fitted "
                                             "tasks to score on, or only its tasks of one split of the benchmark "
                                             "(repeat: mbpp-test=..., humaneval-eval=BANK:eval).")],
    output: Annotated[Path, typer.Option("--output", help="The result JSON; its .md and one PNG per test set "
                                         "are written beside it.")],
    export_axis: Annotated[Path | None, typer.Option(
        "--export-axis", help="Also save the best single-layer linear head as an axis artifact (estimator "
        "supervised-probe) for --axis FILE.")] = None,
    seed: int = typer.Option(0, "--seed", help="Seed of the random control and the MLP."),
    n_boot: int = typer.Option(10_000, "--n-boot", min=100, help="Bootstrap resamples of each interval."),
    encoded_only: bool = typer.Option(False, "--encoded-only", help="Use only the tasks encoded so far (banks still "
                                      "being built or encoded); the result records how many of each bank it used."),
) -> None:
    """Train value heads on the model's own attempts (probes per layer on the mean and last-token residual,
    a multi-layer probe, a small MLP, each also with log-prob), choose them on MBPP validation by within-task
    AUROC, and score them once on every test bank beside log-prob, confidence, the value axis and random."""
    from valueagent.bank.encode import features_path
    from valueagent.bank.head_protocol import run_heads
    from valueagent.bank.heads_report import render, write_heads_report
    from valueagent.bank.store import BankError, load_bank

    tests: dict[str, Any] = {}
    used: dict[str, list[int]] = {}

    def loaded(path: Path, label: str) -> Any:
        bank = load_bank(path)
        if not encoded_only:
            return bank
        done = {r["task_id"] for r in bank if features_path(bank.root, r["task_id"]).is_file()}
        used[label] = [len(done), len(bank)]
        return bank.subset(done)

    try:
        fit = loaded(fit_bank, "fit")
        for item in test:
            label, sep, spec = item.partition("=")
            if not sep or not label or not spec:
                fail(f"--test {item!r} must be LABEL=BANK[:SPLIT], e.g. --test mbpp-test=evals/bank/.../test")
            path, _, split = spec.partition(":")
            tests[label] = loaded(Path(path), label)
            if split:
                tests[label] = _split_of(tests[label], split, item)
        doc, heads = run_heads(fit, tests, seed=seed, n_boot=n_boot, progress=lambda m: typer.echo(m, err=True))
    except (BankError, ValueError) as exc:
        fail(str(exc))
    if encoded_only:
        doc["encoded_only"] = {k: {"tasks_used": a, "tasks_in_bank": b} for k, (a, b) in used.items()}
    if export_axis is not None:
        from valueagent.bank.head_protocol import export_axis as export

        doc["exported_axis"] = export(doc, heads, fit, export_axis)
        if doc["exported_axis"].get("skipped"):
            typer.secho(f"no axis exported: {doc['exported_axis']['skipped']}", fg=typer.colors.YELLOW, err=True)
    write_heads_report(doc, output)
    typer.echo(render(doc))


@bank_app.command("compare")
def compare_cmd(
    replays: Annotated[list[Path], typer.Argument(help="Two or more replay JSON files (`bank replay --output`), "
                                                       "the first the base the others are paired against.")],
    labels: str = typer.Option(..., "--labels", help="One short label per replay, comma-separated (e.g. 0.5b,1.5b); "
                               "also the names of the PNGs."),
    output: Annotated[Path, typer.Option("--output", help="The comparison JSON; its .md and one <label>.png per "
                                         "replay (all on the same axes) are written beside it.")] = Path(
                                             "compare.json"),
) -> None:
    """Put replays of several models' banks side by side and test, per task, whether the value reading's edge
    over its controls grew (difference of differences, bootstrap interval, exact sign-flip p)."""
    from valueagent.bank.compare import write_comparison
    from valueagent.bank.store import BankError

    names = [x.strip() for x in labels.split(",") if x.strip()]
    if len(names) != len(replays) or len(set(names)) != len(names):
        fail(f"--labels {labels!r} must give one distinct label per replay ({len(replays)} given)")
    if bad := [n for n in names if not n.replace(".", "").replace("-", "").replace("_", "").isalnum()]:
        fail(f"--labels {bad} name files: use letters, digits, '.', '-' or '_'")
    results = []
    for path in replays:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            fail(f"{path} is not a replay JSON ({exc.__class__.__name__}): write one with `valueagent bank replay "
                 "BANK --output FILE`")
        if not isinstance(data, dict) or "per_task" not in data or "frontier" not in data:
            fail(f"{path} is not a replay JSON: write one with `valueagent bank replay BANK --output FILE`")
        results.append(data)
    try:
        write_comparison(results, names, output)
    except BankError as exc:
        fail(str(exc))
    typer.echo(output.with_suffix(".md").read_text())


def register(app: typer.Typer) -> None:
    app.add_typer(bank_app, name="bank")
