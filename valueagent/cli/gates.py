"""Which gate calibration a run uses: ``--gate-config``, else the one shipped with the axis it reads.

A policy that gates on a signal needs thresholds in that signal's units on this model and axis. Without
``--gate-config`` the calibration shipped beside the axis is used (:mod:`valueagent.agent.shipped`);
with none for this reading the command refuses to start, before any model loads, and says how to make
one, unless ``--uncalibrated`` asks for the untuned gate (it never backtracks and always tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from valueagent.cli.common import fail

GATE_CONFIG_HELP = ("A calibration file from `valueagent calibrate`, or the name of one shipped with the axis "
                    "(`skip-repeats`). Default: the calibration shipped with the axis read.")
UNCALIBRATED_HELP = ("Run gated policies without thresholds (they never backtrack and always test) when no "
                     "calibration ships for this model and axis.")


@dataclass(frozen=True, kw_only=True)
class GateChoice:
    """The calibration a run uses. ``path`` None: none (not needed, or ``--uncalibrated``). ``pending``:
    the reading is only known once the backend is up (a server), see :func:`confirm`."""

    path: Path | None = None
    configs: dict[str, Any] = field(default_factory=dict)
    document: dict[str, Any] | None = None
    shipped: str | None = None  # the variant, when the file ships with the axis
    needs: tuple[str, ...] = ()
    uncalibrated: bool = False
    pending: bool = False

    def describe(self) -> dict[str, Any]:
        """What ``meta`` records of it."""
        return {"path": None if self.path is None else str(self.path), "shipped": self.shipped,
                "created": (self.document or {}).get("created"), "uncalibrated": self.uncalibrated}


def gated(policies: Sequence[str]) -> tuple[str, ...]:
    """The policies whose gate needs calibrated thresholds."""
    from valueagent.agent.policies import policy_spec

    return tuple(p for p in policies if policy_spec(p).needs_calibration)


def _load(path: Path, shipped: str | None, needs: tuple[str, ...]) -> GateChoice:
    from valueagent.cli import checks

    loaded = checks.gate_config(path)
    assert loaded is not None
    configs, document = loaded
    _check_search(path, configs, needs)
    return GateChoice(path=path, configs=configs, document=document, shipped=shipped, needs=needs)


def _check_search(path: Path, configs: Mapping[str, Any], needs: Sequence[str]) -> None:
    """A search policy with thresholds or a fitted signal needs them in the file (from ``bank replay``)."""
    from valueagent.agent.policies import policy_spec

    missing = [p for p in needs if policy_spec(p).search is not None and not (p in configs and configs[p].search)]
    if missing:
        fail(f"--gate-config {path} has no search calibration for {', '.join(missing)}: make one from a sample "
             "bank of this model with `valueagent bank replay BANK --gate-config-out FILE` and pass "
             "--gate-config FILE")


def _needs_line(needs: Sequence[str]) -> str:
    return f"{', '.join(needs)} {'needs' if len(needs) == 1 else 'need'} gate thresholds, and "


def _how_to_calibrate(reading: Any, model: str, axis: str | None) -> str:
    where = f"model {reading.model_id}, " + (f"axis {reading.axis_path}" if reading.axis_sha256 else "no axis")
    return (f"no gate calibration ships for this reading ({where}): make one with `valueagent run humaneval "
            f"--split calibration --policy single --model {model} --axis {axis or 'none'} --output-dir "
            "runs/calibration` then `valueagent calibrate runs/calibration -o gate.json`, and pass --gate-config "
            "gate.json (or --uncalibrated: gated policies then never backtrack and always test)")


def _variant(name: str, reading: Any) -> Any:  # ShippedCalibration | None
    """``--gate-config NAME``: a calibration shipped for this reading (``default``, ``skip-repeats`` ...)."""
    from valueagent.agent.shipped import calibration_for

    return calibration_for(reading, name) if reading is not None and "/" not in name else None


def choose(gate_config: Path | None, policies: Sequence[str], *, model: str, axis: str | None,
           uncalibrated: bool) -> GateChoice:
    """The calibration of a run, checked before the model loads (one line and exit 2 when refused)."""
    from valueagent.agent.calibrate import check_gate_reading
    from valueagent.agent.shipped import calibrations_for, expected_reading

    needs = gated(policies)
    if gate_config is not None and uncalibrated:
        fail("--gate-config and --uncalibrated contradict each other: drop one")
    try:
        reading = expected_reading(model, axis)
    except Exception as exc:  # a bad --axis file: checks.axis names it first, this is a backstop
        fail(f"--axis {axis}: {exc}")
    if uncalibrated:
        if needs:
            typer.secho(f"warning: {', '.join(needs)} run uncalibrated (--uncalibrated): they never backtrack "
                        "and always test", fg=typer.colors.YELLOW, err=True)
        return GateChoice(needs=needs, uncalibrated=True)
    if gate_config is not None:
        named = None if gate_config.is_file() else _variant(str(gate_config), reading)
        if named is not None:
            choice = _load(named.path, named.variant, needs)
        elif not gate_config.exists() and reading is not None:
            names = ", ".join(c.variant for c in calibrations_for(reading)) or "none ships with this axis"
            fail(f"--gate-config {gate_config}: no such file, nor a calibration shipped with this axis; pass a "
                 f"file made by `valueagent calibrate`, or a shipped name ({names})")
        else:
            choice = _load(gate_config, None, needs)
        if reading is not None and choice.document is not None:
            try:
                check_gate_reading(choice.document, reading.as_model(), gate_config)
            except ValueError as exc:
                fail(f"--gate-config {exc}")
        return choice
    if not needs:
        return GateChoice()
    if reading is None:
        return GateChoice(needs=needs, pending=True)
    found = calibrations_for(reading)
    if not found:
        fail(_needs_line(needs) + _how_to_calibrate(reading, model, axis))
    return _load(found[0].path, found[0].variant, needs)


def confirm(choice: GateChoice, info: Any, *, model: str, axis: str | None) -> GateChoice:
    """After the backend is up: check the calibration against the reading it really has (one line, exit 2)."""
    from valueagent.agent.calibrate import check_gate_reading
    from valueagent.agent.shipped import calibrations_for, reading_of_info

    reading = reading_of_info(info)
    if choice.pending:
        found = calibrations_for(reading)
        if not found:
            fail(_needs_line(choice.needs) + _how_to_calibrate(reading, model, axis))
        choice = _load(found[0].path, found[0].variant, choice.needs)
    if choice.document is not None and choice.path is not None:
        try:
            check_gate_reading(choice.document, reading.as_model(), choice.path)
        except ValueError as exc:
            fail(f"--gate-config {exc}" if choice.shipped is None else str(exc))
    return choice


def disjoint(choice: GateChoice, tasks: Sequence[Any]) -> None:
    """Refuse to run on tasks the thresholds were fitted on (the guarantees need disjoint tasks)."""
    overlap = set((choice.document or {}).get("task_ids", ())) & {t.task_id for t in tasks}
    if overlap:
        fail(f"{len(overlap)} of these tasks were used for calibration (in {choice.path}, e.g. "
             f"{sorted(overlap)[0]}): evaluate on disjoint tasks (for humaneval: --split eval)")
