"""Build a value axis: data -> activations -> estimators -> validation -> choice -> artifact + report;
and ``axis eval``, the same readings of a built axis on its own held-out data.

Resumable: rollouts and every text's activations are cached under ``work_dir``; a killed build
restarts where it stopped (estimators and validation are numpy and re-run in seconds). Progress goes
to stderr. The report (JSON + PNG) records the config, data hash, timings and every figure.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from valueagent.axis import datasets as ds
from valueagent.axis import jobs
from valueagent.axis.activations import TextActs, gather
from valueagent.axis.estimators import diff_of_means, fit_probe, logistic_fit, matched_contrast
from valueagent.axis.evaluate import distinctions_for, paired_reading, summary_figures
from valueagent.axis.progress import Stages
from valueagent.axis.rollouts import collect_rollouts, rollout_job, split_tasks
from valueagent.axis.selection import choose, layer_report, rollout_features, token_table
from valueagent.runtime.artifact import ValueAxis, save_axis


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    """What a build reads and how much (defaults sized for a 2-core CPU; see evals/axis/README.md)."""

    episodes: int = 40  # labelled episodes read: 60% training criteria, 40% held-out criteria
    contrast_groups: int = 16  # matched groups read: 50% training, 50% held-out
    samples: int = 2  # sampled attempts per training coding task
    heldout_tasks: int = 25  # coding tasks kept from the probe: their code pairs are the test
    code_dev_pairs_per_kind: int = 12  # selection pairs per mutation kind (held-out tasks)
    code_test_pairs_per_kind: int | None = None  # test pairs per kind: the held-out tasks' other pairs (None: all)
    code_train_pairs_per_kind: int = 8  # training pairs per kind (probe tasks; rename excluded: it passes)
    confidence_pairs: int = 40
    backtracking_groups: int = 30
    max_new_tokens: int = 192
    temperature: float = 0.8
    n_random: int = 16
    batch_size: int = 2
    max_tokens: int = 4096
    seed: int = 0
    context: jobs.Context = "discovery"
    episodes_dir: str = field(default_factory=lambda: str(ds.shipped_data()[0]))
    distinctions_dir: str = field(default_factory=lambda: str(ds.shipped_data()[1]))
    tasks_path: str = field(default_factory=lambda: str(ds.shipped_data()[2]))
    work_dir: str = field(default_factory=lambda: str(user_dir() / "axis_build"))
    report_dir: str | None = None  # None: beside the axis (:func:`default_report_dir`)
    out: str | None = None  # None: the user's axis directory (:func:`default_out`)
    overwrite: bool = False  # write over an existing axis or report (a shipped one included)
    command: str = ""


BUILD_STAGES = ("data", "rollouts", "activations", "estimators and validation", "write")
EVAL_STAGES = ("data", "activations", "readings")


def _log(msg: str) -> None:
    print(f"[axis build] {msg}", file=sys.stderr, flush=True)


def _select_data(data: ds.AxisData, cfg: BuildConfig) -> dict[str, Any]:
    labelled = [e for e in data.episodes if e.get("labels")]
    n_train = round(cfg.episodes * 0.6)
    train_tasks, held_tasks = split_tasks(data.tasks, n_heldout=cfg.heldout_tasks, seed=cfg.seed)
    held_names = {t.entry_point for t in held_tasks}
    pairs = [p for p in data.code_pairs if p["task"] in held_names]
    train_pairs = [p for p in data.code_pairs if p["task"] not in held_names and p["kind"] != "rename"]
    dev = ds.stratified(pairs, cfg.code_dev_pairs_per_kind * 4, lambda p: p["kind"], seed=cfg.seed,
                        key=lambda p: p["id"])
    return {
        "ep_train": ds.stratified([e for e in labelled if e["split"] == "train"], n_train,
                                  lambda e: e["criterion"], seed=cfg.seed, key=lambda e: e["id"]),
        "ep_held": ds.stratified([e for e in labelled if e["split"] == "heldout"], cfg.episodes - n_train,
                                 lambda e: e["criterion"], seed=cfg.seed, key=lambda e: e["id"]),
        "ctr_train": ds.contrast_groups(data.contrasts, "train", cfg.contrast_groups // 2, seed=cfg.seed),
        "ctr_held": ds.contrast_groups(data.contrasts, "heldout", cfg.contrast_groups - cfg.contrast_groups // 2,
                                       seed=cfg.seed),
        "train_tasks": train_tasks,
        "held_tasks": held_tasks,
        "code_dev": dev,
        "code_test": ds.stratified([p for p in pairs if p["id"] not in {d["id"] for d in dev}],
                                   None if cfg.code_test_pairs_per_kind is None else cfg.code_test_pairs_per_kind * 4,
                                   lambda p: p["kind"], seed=cfg.seed, key=lambda p: p["id"]),
        "code_train": ds.stratified(train_pairs, cfg.code_train_pairs_per_kind * 3, lambda p: p["kind"],
                                    seed=cfg.seed, key=lambda p: p["id"]),
        "confidence": ds.confidence_pairs(data.confidence, cfg.confidence_pairs, seed=cfg.seed),
        "backtracking": ds.backtracking_groups(data.backtracking, cfg.backtracking_groups, seed=cfg.seed),
    }


def _jobs(tok: Any, sel: dict[str, Any], rollouts: list[Any], cfg: BuildConfig) -> dict[str, list[Any]]:
    ctx = cfg.context
    tasks = {t.task_id: t for t in sel["train_tasks"]}
    ep_train = [j for e in sel["ep_train"] if (j := jobs.episode_job(tok, e, keep_tokens=False, context=ctx))]
    ep_held = [j for e in sel["ep_held"] if (j := jobs.episode_job(tok, e, keep_tokens=True, context=ctx))]
    return {
        "ep_train": ep_train,
        "ep_held": ep_held,
        "ctr_train_s": [jobs.contrast_job(tok, s) for s, _ in sel["ctr_train"]],
        "ctr_train_f": [jobs.contrast_job(tok, f) for _, f in sel["ctr_train"]],
        "ctr_held_s": [jobs.contrast_job(tok, s) for s, _ in sel["ctr_held"]],
        "ctr_held_f": [jobs.contrast_job(tok, f) for _, f in sel["ctr_held"]],
        "rollouts": [rollout_job(tok, tasks[r.task_id], r) for r in rollouts],
        "code_ok": [jobs.code_pair_jobs(tok, p)[0] for p in sel["code_dev"]],
        "code_bad": [jobs.code_pair_jobs(tok, p)[1] for p in sel["code_dev"]],
        "code_test_ok": [jobs.code_pair_jobs(tok, p)[0] for p in sel["code_test"]],
        "code_test_bad": [jobs.code_pair_jobs(tok, p)[1] for p in sel["code_test"]],
        "code_tr_ok": [jobs.code_pair_jobs(tok, p)[0] for p in sel.get("code_train", [])],
        "code_tr_bad": [jobs.code_pair_jobs(tok, p)[1] for p in sel.get("code_train", [])],
        "conf_hi": [jobs.confidence_job(tok, h) for h, _ in sel["confidence"]],
        "conf_lo": [jobs.confidence_job(tok, lo) for _, lo in sel["confidence"]],
        "bt_clean": [jobs.backtracking_job(tok, c) for c, _ in sel["backtracking"]],
        "bt_back": [jobs.backtracking_job(tok, b) for _, b in sel["backtracking"]],
    }


def _stack(acts: list[TextActs], span: str) -> tuple[np.ndarray, np.ndarray]:
    keep = [a for a in acts if span in a.spans]
    return np.stack([a.spans[span].mean for a in keep]), np.array([a.spans[span].n_tokens for a in keep])


def _estimators(acts: dict[str, list[TextActs]], sel: dict[str, Any], feats: Any) -> tuple[dict[str, np.ndarray], Any]:
    both = [(a, e) for a, e in zip(acts["ep_train"], sel["ep_train"], strict=False)
            if "before" in a.spans and "after" in a.spans]
    after = np.stack([a.spans["after"].mean for a, _ in both])
    before = np.stack([a.spans["before"].mean for a, _ in both])
    dirs = {"diff_of_means": diff_of_means(
        after, before, [e["criterion"] for _, e in both],
        n_after=np.array([a.spans["after"].n_tokens for a, _ in both]),
        n_before=np.array([a.spans["before"].n_tokens for a, _ in both]))}
    s, _ = _stack(acts["ctr_train_s"], "final")
    f, _ = _stack(acts["ctr_train_f"], "final")
    dirs["matched_contrast"] = matched_contrast(s, f, [c["strategy"] for c, _ in sel["ctr_train"]])
    if acts["code_tr_ok"]:
        ok, _ = _stack(acts["code_tr_ok"], "code")
        bad, _ = _stack(acts["code_tr_bad"], "code")
        dirs["code_contrast"] = matched_contrast(ok, bad, [p["kind"] for p in sel["code_train"]])
    probe = None
    if feats is not None and 0 < feats.passed.sum() < len(feats.passed):
        probe = fit_probe(feats.mean_unit, feats.passed, feats.task)
        dirs["probe"] = probe.directions
    return dirs, probe


def build_axis(loaded: Any, cfg: BuildConfig) -> dict[str, Any]:
    """Run the whole build for ``loaded`` (a :class:`~valueagent.runtime.loading.LoadedModel`)."""
    from valueagent.axis.report import plot_layers
    from valueagent.runtime.backend import HFBackend

    out = Path(cfg.out) if cfg.out else default_out(loaded.model_id)
    rdir = Path(cfg.report_dir) if cfg.report_dir else default_report_dir(out)
    check_outputs(out, rdir, overwrite=cfg.overwrite)
    t0, timings = time.monotonic(), {}
    stages = Stages("axis build", BUILD_STAGES)
    model, tok = loaded.model, loaded.tokenizer
    work = Path(cfg.work_dir) / loaded.model_id.replace("/", "--").lower()
    data = ds.load_data(cfg.episodes_dir, cfg.distinctions_dir, cfg.tasks_path)
    sel = _select_data(data, cfg)
    stages.begin("data", f"{data.data_hash[:12]}: {len(sel['ep_train'])}+{len(sel['ep_held'])} episodes, "
                 f"{len(sel['ctr_train'])}+{len(sel['ctr_held'])} contrast groups, {len(sel['train_tasks'])} probe "
                 f"tasks x {cfg.samples}, {len(sel['code_dev'])}+{len(sel['code_test'])} code pairs (selection+test)")
    stages.begin("rollouts", f"{len(sel['train_tasks']) * cfg.samples} sampled attempts, cached in {work}")
    from valueagent.sandbox import Sandbox

    backend = HFBackend(model, tok, model_id=loaded.model_id, max_batch=8)
    with Sandbox(workers=2) as sandbox:
        rollouts = collect_rollouts(backend, sandbox, sel["train_tasks"], cache=work / "rollouts.jsonl",
                                    samples=cfg.samples, temperature=cfg.temperature,
                                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    backend.close()
    timings["rollouts_s"] = time.monotonic() - t0
    groups = _jobs(tok, sel, rollouts, cfg)
    flat = [j for g in groups.values() for j in g]
    t1 = time.monotonic()
    stages.begin("activations", f"{len(flat)} texts, every layer")
    got = gather(model, tok, flat, batch_size=cfg.batch_size, cache_dir=work_cache(loaded, cfg),
                 max_tokens=cfg.max_tokens, model_tag=model_tag(loaded), progress="activations")
    timings["activations_s"] = time.monotonic() - t1
    acts, i = {}, 0
    for name, g in groups.items():
        acts[name], i = got[i : i + len(g)], i + len(g)
    feats = rollout_features(acts["rollouts"], [r.passed for r in rollouts], [r.task_id for r in rollouts]) \
        if rollouts else None
    stages.begin("estimators and validation", "per layer, against random, position and log-prob controls")
    dirs, probe = _estimators(acts, sel, feats)
    tokens = token_table(acts["ep_held"])
    oof = {"probe": probe.oof_scores} if probe is not None else None
    rep = layer_report(dirs, tokens, (acts["ctr_held_s"], acts["ctr_held_f"]), feats, oof=oof, n_random=cfg.n_random,
                       code=(acts["code_ok"], acts["code_bad"]))
    _add_test_rows(rep, dirs, acts)
    n_layers = len(tokens.layers) - 1
    chosen = choose(rep, exclude_layers=(0, n_layers))
    est, layer = chosen["estimator"], chosen["layer"]
    direction = dirs[est][layer]
    dist = distinctions_for(acts, sel, tokens, direction, layer, n_random=cfg.n_random)
    calib = None
    if feats is not None and len(np.unique(feats.passed)) == 2:
        v = feats.mean_unit[:, layer] @ (direction / np.linalg.norm(direction))
        w, b = logistic_fit(v[:, None], feats.passed.astype(float), 1e-3)
        calib = {"kind": "logistic", "feature": "mean cosine over the completion", "a": float(w[0]),
                 "b": float(b), "n": int(len(v)), "note": "in-sample on the probe's training rollouts"}
    norms = np.linalg.norm(_token_norms(acts["ep_held"], layer), axis=-1)
    summary = summary_figures(rep, chosen, dist)
    validation = {"chosen": chosen, "summary": summary, "calibration": calib,
                  "probe_train_tasks": [t.entry_point for t in sel["train_tasks"]],
                  "heldout_tasks": [t.entry_point for t in sel["held_tasks"]],
                  "code_test_pairs": [p["id"] for p in sel["code_test"]]}
    axis = ValueAxis(direction=direction.astype(np.float32), layer=layer, model_id=loaded.model_id,
                     model_revision=loaded.revision, hidden_size=direction.shape[0], num_layers=n_layers,
                     estimator=est, residual_norm_mean=float(norms.mean()), residual_norm_std=float(norms.std()),
                     data_hash=data.data_hash, validation=validation, per_layer=dirs[est].astype(np.float32),
                     notes=f"built by `{cfg.command}`; see {rdir}/report.json")
    stages.begin("write", f"{out} and {rdir}/")
    save_axis(axis, out)
    timings["total_s"] = time.monotonic() - t0
    report = {"model_id": loaded.model_id, "revision": loaded.revision, "dtype": loaded.dtype,
              "config": asdict(cfg), "data_hash": data.data_hash, "timings": timings, "axis": str(out),
              "axis_sha256": axis.sha256, "chosen": chosen, "summary": summary, "distinctions": dist,
              "counts": {k: len(v) for k, v in groups.items()},
              "rollouts": {"n": len(rollouts), "passed": int(sum(r.passed for r in rollouts))},
              "probe": None if probe is None else {"oof_auroc": probe.oof_auroc.tolist(), "lam": probe.lam.tolist()},
              **rep}
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / "report.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    plot_layers(report, rdir / "layers.png")
    _log(f"chose {est} @ layer {layer} (score {chosen['selection_score']:+.3f}); wrote {out} in "
         f"{timings['total_s']:.0f}s")
    return {"summary": {"axis": str(out), "chosen": chosen, **summary}, "report": report}


def _add_test_rows(rep: dict[str, Any], dirs: dict[str, np.ndarray], acts: dict[str, list[TextActs]]) -> None:
    """Code-pair win rate of every estimator at every layer: the test, shown per layer for the record and
    never used for the choice."""
    for name, rows in rep["per_layer"].items():
        for li, (layer, row) in enumerate(zip(rep["layers"], rows, strict=True)):
            r = paired_reading(acts["code_test_ok"], acts["code_test_bad"], "code", li, dirs[name][layer])
            row["test_code_win_rate"] = r["value_win_rate"]
            if name == next(iter(rep["per_layer"])):
                rep["controls"]["tokens"]["per_layer"][li]["test_code_random_win_rate_oriented_mean"] = \
                    r["random_win_rate_oriented_mean"]
                rep["controls"]["test_code_logprob_win_rate"] = r["logprob_win_rate"]


def evaluate_axis(loaded: Any, axis: Any, cfg: Any = None, *, n_random: int = 16) -> dict[str, Any]:
    """``axis eval``: read the distinctions and held-out episodes with ``axis`` at its own layer only.
    ``cfg`` (a :class:`BuildConfig`) says which data and how much. Code pairs come
    from the tasks the axis's estimators never saw, when the axis records them."""
    from valueagent.axis.reading import check_axis

    check_axis(loaded.model, loaded.model_id, axis)
    cfg = cfg or BuildConfig()
    stages = Stages("axis eval", EVAL_STAGES)
    data = ds.load_data(cfg.episodes_dir, cfg.distinctions_dir, cfg.tasks_path)
    sel = _select_data(data, cfg)
    stages.begin("data", f"{data.data_hash[:12]}")
    test_ids = axis.validation.get("code_test_pairs")
    if test_ids:  # the axis's own test pairs (on tasks its estimators never saw)
        sel["code_test"] = [p for p in data.code_pairs if p["id"] in set(test_ids)]
    sel["ep_train"], sel["ctr_train"], sel["code_train"], sel["code_dev"] = [], [], [], []
    groups = _jobs(loaded.tokenizer, sel, [], cfg)
    flat = [j for g in groups.values() for j in g]
    stages.begin("activations", f"{len(flat)} texts (those a build read come from its cache)")
    # All layers, in the build's cache: texts the build already read are not run again.
    got = gather(loaded.model, loaded.tokenizer, flat, batch_size=cfg.batch_size, max_tokens=cfg.max_tokens,
                 cache_dir=work_cache(loaded, cfg), model_tag=model_tag(loaded), progress="axis eval")
    acts, i = {}, 0
    for name, g in groups.items():
        acts[name], i = got[i : i + len(g)], i + len(g)
    stages.begin("readings", f"layer {axis.layer}, each beside {n_random} random directions")
    dist = distinctions_for(acts, sel, token_table(acts["ep_held"]), np.asarray(axis.direction), axis.layer,
                            n_random=n_random)
    return {"model_id": loaded.model_id, "axis_sha256": axis.sha256, "layer": axis.layer,
            "estimator": axis.estimator, "distinctions": dist}


def work_cache(loaded: Any, cfg: BuildConfig) -> Path:
    """Where a build caches this model's activations (``axis eval`` reuses them)."""
    return Path(cfg.work_dir) / str(loaded.model_id).replace("/", "--").lower() / "acts"


def model_tag(loaded: Any) -> str:
    """What identifies the model's activations in the cache."""
    return f"{loaded.model_id}@{loaded.revision}:{loaded.dtype}"


def _token_norms(acts: list[TextActs], layer: int) -> np.ndarray:
    """Raw hidden states of held-out episode tokens at ``layer`` (position 0 never included)."""
    rows = [t[:, a.layers.index(layer)] for a in acts for s in ("before", "after")
            if s in a.spans and (t := a.spans[s].tokens) is not None]
    return np.concatenate(rows).astype(np.float32)


def user_dir() -> Path:
    """Where builds write by default: ``axes/`` and ``axis_build/`` in the user cache
    (``$VALUEAGENT_CACHE``, else ``~/.cache/valueagent``), never inside the installed package."""
    from valueagent.runtime.embedded import cache_root

    return cache_root()


def default_out(model_id: str) -> Path:
    """The axis a build writes for ``model_id`` when no ``--out`` is given (in the user cache)."""
    from valueagent.runtime.artifact import axis_file_name

    return user_dir() / "axes" / axis_file_name(model_id)


def default_report_dir(out: Path) -> Path:
    """The report of the axis ``out`` when no ``--report-dir`` is given: ``<out stem>.report/`` beside it."""
    return out.with_name(f"{out.stem}.report")


def _shipped(path: Path) -> bool:
    from importlib.resources import files

    package = Path(str(files("valueagent"))).resolve()
    return path.resolve().is_relative_to(package)


def check_outputs(out: Path, report_dir: Path, *, overwrite: bool) -> None:
    """Refuse (FileExistsError) to write over an existing axis or report unless ``overwrite``: a shipped
    axis, or a committed report, is replaced only when asked. Resuming a killed build is unaffected (the
    axis and report are written at its end)."""
    if overwrite:
        return
    for path in (out, report_dir / "report.json"):
        if path.exists():
            what = "the axis shipped with the package" if _shipped(path) else "an earlier build's output"
            raise FileExistsError(f"{path} exists ({what}): choose another --out/--report-dir, or pass "
                                  "--overwrite to replace it")


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
