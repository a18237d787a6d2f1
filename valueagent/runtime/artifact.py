"""The value-axis artifact: a safetensors file with typed metadata and a readable JSON sidecar.

The direction is stored unnormalized, as in the paper. Metadata records everything needed to use
the axis safely (model id and revision, layer, hidden size, residual-norm statistics for expressing
steering as a fraction) and to trust it (estimator, data hash, validation figures).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSIONS = (1, 2)  # 1: a cosine-read axis; 2: a linear-read one (``reading``/``bias`` in its metadata)
READINGS = ("cosine", "linear")


class AxisMismatchError(ValueError):
    """The axis was built for a model of another id or shape."""


@dataclass(frozen=True, kw_only=True)
class ValueAxis:
    """A direction in the residual stream at ``layer`` (valueagent convention, see ``layers.py``)."""

    direction: np.ndarray  # (hidden,) float32, unnormalized
    layer: int
    model_id: str
    hidden_size: int
    num_layers: int
    estimator: str
    model_revision: str | None = None
    residual_norm_mean: float | None = None
    residual_norm_std: float | None = None
    data_hash: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    per_layer: np.ndarray | None = None  # (num_layers + 1, hidden), hidden_states-indexed, optional
    reading: str = "cosine"
    """How a residual ``h`` becomes a value (:func:`residual_value`): ``cosine``, cos(h, direction), the paper's
    reading of a contrastive axis; ``linear``, ``h . direction + bias``, a supervised head's logit (``bank
    heads --export-axis``), whose mean over a completion's tokens is the head's score of the mean residual."""
    bias: float = 0.0

    def __post_init__(self) -> None:
        if self.reading not in READINGS:
            raise ValueError(f"reading {self.reading!r} is not one of {', '.join(READINGS)}")
        if not np.isfinite(self.bias) or (self.reading == "cosine" and self.bias != 0.0):
            raise ValueError(f"bias {self.bias} is not finite, or is set on a cosine-read axis (it has none)")
        if self.direction.shape != (self.hidden_size,):
            raise ValueError(f"direction has shape {self.direction.shape}, expected ({self.hidden_size},)")
        if not 0 <= self.layer <= self.num_layers:
            raise ValueError(f"layer {self.layer} outside 0..{self.num_layers}")
        if not np.isfinite(self.direction).all() or float(np.linalg.norm(self.direction)) == 0.0:
            raise ValueError("direction is zero or not finite")

    @property
    def sha256(self) -> str:
        """Hash of the direction's bytes and layer: identifies the axis in run configs."""
        h = hashlib.sha256(np.ascontiguousarray(self.direction, dtype=np.float32).tobytes())
        h.update(f"layer={self.layer}".encode())
        if self.reading != "cosine":  # a cosine axis keeps the hash it always had
            h.update(f"reading={self.reading};bias={float(self.bias)!r}".encode())
        return h.hexdigest()

    def reading_vector(self) -> np.ndarray:
        """The vector :func:`residual_value` takes: the unit direction (cosine) or the direction itself (linear)."""
        d = np.asarray(self.direction, dtype=np.float32)
        return d / np.linalg.norm(d) if self.reading == "cosine" else d

    def span_value(self, mean: np.ndarray, mean_unit: np.ndarray) -> float:
        """The mean reading over a span's tokens, from the span's mean residual and mean unit residual
        (:mod:`valueagent.axis.activations`): a linear reading's mean is the reading of the mean; a cosine's, the
        mean unit residual's projection on the unit direction."""
        if self.reading == "linear":
            return float(residual_value(np.asarray(mean, np.float64), np.asarray(self.direction, np.float64),
                                        linear=True, bias=self.bias))
        return float(np.asarray(mean_unit, np.float64) @ self.reading_vector().astype(np.float64))

    @property
    def schema_version(self) -> int:
        """The file schema this axis needs: 1 for a cosine reading (every valueagent reads it), 2 for a linear one."""
        return 1 if self.reading == "cosine" else 2

    def metadata(self) -> dict[str, Any]:
        linear = {"reading": self.reading, "bias": float(self.bias)} if self.reading != "cosine" else {}
        return {
            "schema_version": self.schema_version,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "layer": self.layer,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "estimator": self.estimator,
            "residual_norm_mean": self.residual_norm_mean,
            "residual_norm_std": self.residual_norm_std,
            "data_hash": self.data_hash,
            "validation": self.validation,
            "notes": self.notes,
            **linear,
            "sha256": self.sha256,
        }

    def check_model(self, model_id: str, num_layers: int, hidden_size: int) -> None:
        """Refuse a model of another shape; refuse another id unless the shape is identical too."""
        if hidden_size != self.hidden_size or num_layers != self.num_layers:
            raise AxisMismatchError(
                f"this axis was built for {self.model_id} ({self.num_layers} layers x {self.hidden_size}), "
                f"but the model is {model_id} ({num_layers} layers x {hidden_size}); build an axis for this "
                "model with `valueagent axis build --model ...` or pass the matching --axis"
            )
        if _norm_id(model_id) != _norm_id(self.model_id):
            raise AxisMismatchError(
                f"this axis was built for {self.model_id!r}, not {model_id!r} (same shape, different model); "
                "a value axis does not transfer between models — build one with `valueagent axis build`"
            )


def residual_value(h: Any, vector: Any, *, linear: bool, bias: float = 0.0) -> Any:
    """The one reading rule, for every engine: the value of residuals ``h`` ``(..., H)`` (a numpy array or a
    torch tensor, float32) given ``vector``, the axis's :meth:`ValueAxis.reading_vector` in the same library.
    Cosine: ``h . unit / |h|``; linear: ``h . direction + bias``."""
    dot = h @ vector
    if linear:
        return dot + bias
    norm = (h * h).sum(-1) ** 0.5
    return dot / (norm.clamp_min(1e-6) if hasattr(norm, "clamp_min") else np.maximum(norm, 1e-6))


def axis_file_name(model_id: str) -> str:
    """The file name an axis of ``model_id`` goes by, ``org--name.safetensors`` in lower case: the rule of
    the shipped axes (:func:`shipped_axis_path`), of a build's default output and of ``axis import``."""
    return f"{model_id.replace('/', '--').lower()}.safetensors"


def shipped_axes_dir() -> Path:
    """``valueagent/data/axes``: the axes shipped as package data, with their gate calibrations."""
    from importlib import resources

    return Path(str(resources.files("valueagent"))) / "data" / "axes"


def shipped_axis_path(model_id: str) -> Path | None:
    """The axis shipped with the package for ``model_id`` (what ``--axis default`` reads), or None."""
    candidate = shipped_axes_dir() / axis_file_name(model_id)
    return candidate if candidate.is_file() else None


HEAD_SUFFIX = ".head.safetensors"


def shipped_head_path(model_id: str) -> Path | None:
    """The value head shipped for ``model_id`` (``--axis head``): a supervised probe trained on the model's own
    MBPP attempts and exported as an axis (``valueagent bank heads --export-axis``), or None."""
    candidate = shipped_axes_dir() / axis_file_name(model_id).replace(".safetensors", HEAD_SUFFIX)
    return candidate if candidate.is_file() else None


def _no_head_message(model_id: str) -> str:
    return (f"no value head is shipped for {model_id}: fit one on its MBPP banks (`valueagent bank heads FIT_BANK "
            "--test LABEL=TEST_BANK --output heads.json --export-axis FILE`, as evals/heads/run.sh does) and pass "
            "--axis FILE, or use --axis default")


def _norm_id(model_id: str) -> str:
    return model_id.rstrip("/").lower()


def save_axis(axis: ValueAxis, path: str | Path) -> Path:
    """Write ``path`` (.safetensors) and ``path`` with suffix ``.json`` (readable sidecar)."""
    from safetensors.numpy import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"an axis file must end in .safetensors, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"direction": np.ascontiguousarray(axis.direction, dtype=np.float32)}
    if axis.per_layer is not None:
        tensors["per_layer"] = np.ascontiguousarray(axis.per_layer, dtype=np.float32)
    meta = axis.metadata()
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"valueagent": json.dumps(meta)})
    tmp.chmod(0o644)  # safetensors writes 0600; an axis is package data that every user must read
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def load_axis(path: str | Path) -> ValueAxis:
    """Read an axis artifact; a clear error if the file is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no axis file at {path}; build one with `valueagent axis build --out {path}`")
    if path.suffix == ".npy":
        raise ValueError(
            f"{path} is a raw numpy array; convert it first with "
            f"`valueagent axis import {path} --model MODEL_ID --layer L`"
        )
    with safe_open(str(path), framework="numpy") as f:
        raw = (f.metadata() or {}).get("valueagent")
        if raw is None:
            raise ValueError(f"{path} is a safetensors file without valueagent metadata; not a value axis")
        meta = json.loads(raw)
        direction = f.get_tensor("direction")
        per_layer = f.get_tensor("per_layer") if "per_layer" in f.keys() else None
    if meta.get("schema_version") not in SCHEMA_VERSIONS:
        raise ValueError(f"{path} has axis schema {meta.get('schema_version')}, this valueagent reads "
                         f"{' and '.join(map(str, SCHEMA_VERSIONS))}: upgrade valueagent")
    meta.pop("sha256", None)
    meta.pop("schema_version")  # derived from the reading
    return ValueAxis(direction=direction, per_layer=per_layer, **meta)


def axis_from_array(
    array: np.ndarray, *, model_id: str, layer: int, estimator: str = "imported", notes: str = ""
) -> ValueAxis:
    """Build an axis from a ``(num_layers + 1, hidden)`` hidden_states-indexed array (the paper's format)."""
    if array.ndim != 2:
        raise ValueError(
            f"expected a (num_layers + 1, hidden) array indexed like hidden_states, got shape {array.shape}"
        )
    n_layers = array.shape[0] - 1
    if not 1 <= layer <= n_layers:
        raise ValueError(f"layer {layer} outside 1..{n_layers} for an array of shape {array.shape}")
    return ValueAxis(
        direction=np.asarray(array[layer], dtype=np.float32),
        per_layer=np.asarray(array, dtype=np.float32),
        layer=layer,
        model_id=model_id,
        hidden_size=array.shape[1],
        num_layers=n_layers,
        estimator=estimator,
        notes=notes,
    )


def axis_path(model_id: str, axis: str | None) -> Path | None:
    """The file ``--axis`` names for ``model_id``: ``default`` its shipped contrastive axis (None if none ships),
    ``head`` its shipped value head (an error if none ships: asked for by name, it is not quietly replaced),
    ``none``/None nothing, anything else a path."""
    if axis in (None, "", "none"):
        return None
    if axis == "default":
        return shipped_axis_path(model_id)
    if axis == "head":
        if (path := shipped_head_path(model_id)) is None:
            raise FileNotFoundError(_no_head_message(model_id))
        return path
    return Path(axis)


def resolve_axis(model_id: str, axis: str | None) -> tuple[ValueAxis | None, str | None]:
    """The axis a backend loads for ``model_id`` (:func:`axis_path`) and the name it reports."""
    path = axis_path(model_id, axis)
    if path is None:
        return None, None
    return load_axis(path), f"{axis}:{model_id}" if axis in ("default", "head") else str(axis)
