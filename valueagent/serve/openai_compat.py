"""``/v1/chat/completions`` in OpenAI's shapes: the request mapped to a GenerationRequest, the Generation
mapped to a completion (or to chunks when streaming), the value trace kept under ``valueagent``."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

from valueagent.runtime.generation import Generation, GenerationRequest
from valueagent.runtime.wire import to_json
from valueagent.serve.schemas import ChatBody


def chat_request(body: ChatBody, *, max_new_tokens: int) -> GenerationRequest:
    """The generation a chat body asks for. Without a ``seed`` a sampled request gets a fresh one, reported
    back under ``valueagent.seed`` so the answer can be reproduced."""
    seed = body.seed if body.seed is not None else (secrets.randbelow(2**31) if body.temperature > 0 else 0)
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return GenerationRequest(
        messages=tuple(m.plain() for m in body.messages), max_new_tokens=max_new_tokens,
        temperature=body.temperature, top_p=body.top_p, seed=seed, stop=stop, steer=body.steer,
    )


def _content(gen: Generation, stop: tuple[str, ...]) -> str:
    """The text up to (not including) the first stop string, as OpenAI returns it; the trace keeps every
    generated token."""
    cut = min((i for s in stop if (i := gen.text.find(s)) >= 0), default=len(gen.text))
    return gen.text[:cut]


def _finish(gen: Generation) -> str:
    return "length" if gen.finish_reason == "length" else "stop"


def trace(gen: Generation, request: GenerationRequest, axis: str | None) -> dict[str, Any]:
    """Everything the backend returned but the text, with the seed and the axis it was read on."""
    data = to_json(gen)
    data.pop("text", None)
    return {**data, "seed": request.seed, "axis": axis}


def _openai_logprobs(gen: Generation) -> dict[str, Any]:
    return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                        for t, lp in zip(gen.tokens, gen.logprobs, strict=False)]}


def completion(gen: Generation, request: GenerationRequest, *, model: str, axis: str | None,
               logprobs: bool) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": _content(gen, request.stop)},
                     "finish_reason": _finish(gen), "logprobs": _openai_logprobs(gen) if logprobs else None}],
        "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.n_tokens,
                  "total_tokens": gen.prompt_tokens + gen.n_tokens},
        "valueagent": trace(gen, request, axis),
    }


def per_token(data: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """One dict per generated token from a generation's JSON: every list as long as the tokens, named in the
    singular (``values`` -> ``value``, ``entropies`` -> ``entropy``, ...)."""
    singular = {"tokens": "token", "token_ids": "token_id", "values": "value", "logprobs": "logprob",
                "entropies": "entropy"}
    lists = {singular.get(k, k): v for k, v in data.items() if isinstance(v, list) and len(v) == n and n > 0}
    return [{k: v[i] for k, v in lists.items()} for i in range(n)]


def sse(data: Any) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def chunks(gen: Generation, request: GenerationRequest, *, model: str, axis: str | None,
           include_usage: bool) -> Iterator[bytes]:
    """The completion as ``chat.completion.chunk`` events: one per generated token, each with that token's
    trace under ``valueagent``; the content stops where a stop string begins, as in the plain answer."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}
    content = _content(gen, request.stop)
    yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]})
    sent = 0
    for i, tok in enumerate(per_token(to_json(gen), gen.n_tokens)):
        piece = str(tok.get("token", ""))[: max(0, len(content) - sent)]
        sent += len(piece)
        yield sse({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                   "valueagent": {"index": i, **tok}})
    summary = {k: v for k, v in trace(gen, request, axis).items() if not isinstance(v, list)}
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(gen)}], "valueagent": summary})
    if include_usage:
        yield sse({**base, "choices": [], "usage": {"prompt_tokens": gen.prompt_tokens,
                                                     "completion_tokens": gen.n_tokens,
                                                     "total_tokens": gen.prompt_tokens + gen.n_tokens}})
    yield b"data: [DONE]\n\n"
