"""Gate calibrations shipped beside the axis they were made on, and the reading a run will have.

A gate's thresholds are in the units of one axis on one model, so a calibration ships as package data
next to its axis (``valueagent/data/axes/<slug>.gate.json``, variants ``<slug>.gate-<variant>.json``) and
is found by the ``reading`` it records: the model id and the axis sha256. The axis is picked by default
(``--axis default``); so is its calibration.

:func:`expected_reading` says, before any weights load, which model id and axis a spec will read with:
the refusal "no calibration for this reading" then costs no model load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_VARIANT = "default"
_SUFFIX = ".gate"


@dataclass(frozen=True, kw_only=True)
class Reading:
    """What a run's values are measured in: the model id and the axis content hash (None: no axis)."""

    model_id: str
    axis_sha256: str | None
    axis_layer: int | None
    axis_path: str | None

    def as_model(self) -> dict[str, Any]:
        """The fields :func:`valueagent.agent.calibrate.check_gate_reading` compares."""
        return {"model_id": self.model_id, "axis_layer": self.axis_layer, "axis_sha256": self.axis_sha256}


@dataclass(frozen=True, kw_only=True)
class ShippedCalibration:
    """A gate calibration file in the package: ``variant`` is ``default`` or the name after ``.gate-``."""

    path: Path
    variant: str
    model_id: str | None
    axis_sha256: str | None


def shipped_calibrations() -> tuple[ShippedCalibration, ...]:
    """Every gate calibration shipped with the package, by file name."""
    from valueagent.runtime.artifact import shipped_axes_dir

    out = []
    for path in sorted(shipped_axes_dir().glob(f"*{_SUFFIX}*.json")):
        stem = path.name.removesuffix(".json")
        _, _, tail = stem.partition(_SUFFIX)
        variant = tail.removeprefix("-") or DEFAULT_VARIANT
        reading = json.loads(path.read_text(encoding="utf-8")).get("reading") or {}
        out.append(ShippedCalibration(path=path, variant=variant, model_id=reading.get("model_id"),
                                      axis_sha256=reading.get("axis_sha256")))
    return tuple(out)


def calibrations_for(reading: Reading) -> tuple[ShippedCalibration, ...]:
    """The shipped calibrations made on ``reading`` (same model id and axis sha256), default first."""
    if reading.axis_sha256 is None:
        return ()
    found = [c for c in shipped_calibrations()
             if c.axis_sha256 == reading.axis_sha256 and c.model_id == reading.model_id]
    return tuple(sorted(found, key=lambda c: (c.variant != DEFAULT_VARIANT, c.variant)))


def calibration_for(reading: Reading, variant: str = DEFAULT_VARIANT) -> ShippedCalibration | None:
    """The shipped calibration ``variant`` of ``reading``, or None."""
    return next((c for c in calibrations_for(reading) if c.variant == variant), None)


def expected_model_id(spec: str) -> str | None:
    """The model id ``valueagent.runtime.loading.load_model`` will report for ``spec``; None for a server."""
    if spec.startswith(("http://", "https://")):
        return None
    from valueagent.runtime.embedded import SOURCES, read_marker

    if spec in SOURCES:
        return SOURCES[spec].model_id
    local = Path(spec).expanduser()
    if local.is_dir():
        marker: dict[str, Any] = read_marker(local) or {}
        return str(marker.get("model_id") or local.resolve())
    return spec


def expected_reading(model: str, axis: str | None) -> Reading | None:
    """The reading ``load_backend(model, axis=axis)`` will have, known without loading weights; None when
    only the loaded backend can tell (a ``valueagent serve`` server). ``axis``: ``default``, ``head``, a path, or
    ``none``/None. Raises what :func:`valueagent.runtime.artifact.load_axis` raises for a bad axis file."""
    model_id = expected_model_id(model)
    if model_id is None:
        return None
    from valueagent.runtime.artifact import axis_path, load_axis

    path = axis_path(model_id, axis)
    if path is None:
        return Reading(model_id=model_id, axis_sha256=None, axis_layer=None, axis_path=None)
    loaded = load_axis(path)
    return Reading(model_id=model_id, axis_sha256=loaded.sha256, axis_layer=loaded.layer, axis_path=str(path))


def reading_of_info(info: Any) -> Reading:
    """The reading of a loaded backend (its :class:`~valueagent.runtime.generation.ModelInfo`)."""
    return Reading(model_id=info.model_id, axis_sha256=info.axis_sha256, axis_layer=info.axis_layer,
                   axis_path=info.axis)
