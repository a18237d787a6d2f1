"""``bank encode``: residual features of every bank sample, from one teacher-forced pass per task.

For each task the N + 1 samples run as one left-padded batch over prompt + prefill + the sample's stored
tokens (no generation). For every layer (valueagent convention: ``hidden_states[L]``, 0 = embeddings) we
keep, float16:

- ``mean``: the mean residual over the sample's generated tokens, ``(S, L+1, H)``: the positions a live
  run reads its value at (each generated token's own position), so a head fitted on it reads the same
  thing live;
- ``last``: the residual at the last generated token, ``(S, L+1, H)``.

One ``features/<task>.npz`` per task beside the bank (resumable; a task already encoded is skipped), with
``features/features.json`` naming the model, its revision, the arithmetic and the bank manifest it was
made from. Features are rebuildable, so they are not committed (``.gitignore``); their time and size per
bank are in ``evals/bank/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from valueagent.bank.store import MANIFEST, Bank, BankError

FEATURES_DIR = "features"
FEATURES_MANIFEST = "features.json"
FORMAT = 1

__all__ = ["FEATURES_DIR", "Features", "encode_bank", "features_manifest", "load_features", "manifest_sha256"]


def manifest_sha256(root: Path) -> str:
    """sha256 of the bank's ``bank.json``: the features' record of which bank they describe."""
    return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()


def features_path(root: Path, task_id: str) -> Path:
    return root / FEATURES_DIR / (task_id.replace("/", "_") + ".npz")


def features_manifest(root: Path) -> dict[str, Any]:
    """``features/features.json`` of a bank, or an error naming the command that makes it."""
    path = root / FEATURES_DIR / FEATURES_MANIFEST
    if not path.is_file():
        raise BankError(f"{root} has no residual features: run `valueagent bank encode {root}` (prefill only, "
                        "minutes per bank)")
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("bank_sha256") != manifest_sha256(root):
        raise BankError(f"{path} was made from another bank manifest: delete {root / FEATURES_DIR} and rerun "
                        f"`valueagent bank encode {root}`")
    return doc


@dataclass(frozen=True)
class Features:
    """One task's features: ``mean``/``last`` ``(S, L+1, H)`` float16 and each sample's token count."""

    mean: np.ndarray
    last: np.ndarray
    n_tokens: np.ndarray


def load_features(root: Path, task_id: str) -> Features:
    path = features_path(root, task_id)
    if not path.is_file():
        raise BankError(f"{task_id} of {root} is not encoded yet: run `valueagent bank encode {root}` (it resumes)")
    with np.load(path) as z:
        return Features(mean=z["mean"], last=z["last"], n_tokens=z["n_tokens"])


def _save(path: Path, feats: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, mean=feats.mean, last=feats.last, n_tokens=feats.n_tokens)
    os.replace(tmp, path)


def encode_task(forward: Callable[[list[int], list[list[int]]], Any], prompt_ids: Sequence[int],
                record: Mapping[str, Any]) -> Features:
    """Features of one task's samples. ``forward(prompt, completions)`` returns the hidden states of the
    right-padded completion rows after the shared prompt, ``(L+1, B, T, H)`` (a float32 torch tensor)."""
    import torch

    samples = record["samples"]
    rows = [list(s["token_ids"]) for s in samples]
    counts = np.asarray([len(r) for r in rows], dtype=np.int32)
    hs = forward(list(prompt_ids), [r or [0] for r in rows])  # (L+1, B, T, H); an empty row gets a dummy token
    n_layers, hidden = hs.shape[0], hs.shape[3]
    mean = np.zeros((len(rows), n_layers, hidden), dtype=np.float16)
    last = np.zeros_like(mean)
    for i, n in enumerate(counts):
        if n == 0:  # an empty answer has no generated position: zeros, and n_tokens says so
            continue
        span = hs[:, i, :n, :]  # (L+1, n, H)
        mean[i] = span.mean(dim=1).to(torch.float16).numpy()
        last[i] = span[:, -1, :].to(torch.float16).numpy()
    return Features(mean=mean, last=last, n_tokens=counts)


def encode_bank(bank: Bank, *, loaded: Any, prompt_ids: Callable[[str], list[int]],
                on_task: Callable[[dict[str, Any]], None] | None = None, reverse: bool = False) -> tuple[int, int]:
    """Encode every task of ``bank`` not encoded yet (last task first with ``reverse``: a second process on
    another core meets the first; each checks a task's file just before encoding it); returns
    ``(written, skipped)``.

    ``loaded`` is a :class:`valueagent.runtime.loading.LoadedModel` of the bank's model (checked by id and
    revision); ``prompt_ids(task_id)`` the token ids of that task's prompt + prefill, exactly as sampled
    (checked against the bank's recorded prompt length).
    """
    import inspect

    import torch

    root = bank.root
    man = bank.manifest
    if loaded.model_id != man.model_id or (man.revision and loaded.revision != man.revision):
        raise BankError(f"{root} was sampled from {man.model_id} (revision {str(man.revision)[:12]}), not "
                        f"{loaded.model_id}: encode it with the bank's own model")
    model, tok = loaded.model, loaded.tokenizer
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @torch.inference_mode()
    def forward(prompt: list[int], rows: list[list[int]]) -> Any:
        # The prompt is shared by every sample: one pass over it, its cache repeated for the batch, then the
        # completions right-padded (a causal model never lets a real token see the padding after it).
        head = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
        cache = head.past_key_values
        cache.batch_repeat_interleave(len(rows))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), len(prompt) + width), dtype=torch.long)
        mask[:, : len(prompt)] = 1
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, len(prompt) : len(prompt) + len(r)] = 1
        pos = torch.arange(len(prompt), len(prompt) + width)[None, :].expand(len(rows), -1)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                    output_hidden_states=True, use_cache=True, logits_to_keep=1, **{key: cache})
        return torch.stack(out.hidden_states).float().cpu()

    folder = root / FEATURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "bank_sha256": manifest_sha256(root), "model_id": loaded.model_id,
           "revision": loaded.revision, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
           "weights": getattr(loaded, "weights", None), "layers": "hidden_states[L], 0 = embeddings",
           "features": {"mean": "mean residual over generated tokens", "last": "residual at the last generated token"},
           "storage": "float16"}
    man_path = folder / FEATURES_MANIFEST
    if man_path.is_file():
        old = json.loads(man_path.read_text())
        if old.get("bank_sha256") != doc["bank_sha256"] or old.get("model_id") != doc["model_id"]:
            raise BankError(f"{man_path} describes another bank or model: delete {folder} to re-encode")
    man_path.write_text(json.dumps(doc, indent=1) + "\n")
    written = skipped = tokens = 0
    started = time.time()
    for record in reversed(bank.tasks) if reverse else bank:
        tid = record["task_id"]
        path = features_path(root, tid)
        if path.is_file():
            skipped += 1
            continue
        ids = prompt_ids(tid)
        if record.get("prompt_tokens") not in (None, len(ids)):
            raise BankError(f"{tid}: the prompt encodes to {len(ids)} tokens, the bank recorded "
                            f"{record['prompt_tokens']}: the bank was made with another prompt or tokenizer")
        feats = encode_task(forward, ids, record)
        _save(path, feats)
        written += 1
        tokens += sum(len(ids) + len(s["token_ids"]) for s in record["samples"])
        if on_task is not None:
            elapsed = time.time() - started
            on_task({"done": written + skipped, "total": len(bank), "last": tid, "elapsed_s": round(elapsed),
                     "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1)})
    return written, skipped


def check_encoded(root: Path, task_ids: Sequence[str]) -> None:
    """An error naming the command when any of ``task_ids`` has no features."""
    features_manifest(root)
    missing = [t for t in task_ids if not features_path(root, t).is_file()]
    if missing:
        raise BankError(f"{len(missing)} tasks of {root} are not encoded (e.g. {missing[0]}): run "
                        f"`valueagent bank encode {root}` (it resumes)")

