"""Model replicas on a Ray cluster behind one :class:`~valueagent.runtime.generation.ValueBackend`.

``eval humaneval --ray`` keeps its agents, its records and its sandbox where it runs (so sandbox executions
stay bounded by ``--workers``, and ``--resume`` works as in a local run) and sends every model call to one
of K replicas: Ray actors, one per GPU or per group of CPU cores, each holding an in-process backend. A
replica's methods are coroutines, so the calls it has at once are batched by its worker exactly as in
process. A conversation stays on the replica that served its first request (keyed by its opening
messages), so a task's later, longer prompts reuse that replica's prefix cache; a new conversation goes to
the replica with the fewest requests in flight. Every request carries its seed, so the replica that
serves it changes nothing in its tokens.

``ray`` is an optional extra (``pip install 'valueagent[ray]'``); nothing here imports it until a cluster is
used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from valueagent.runtime.generation import Generation, GenerationRequest, Message, ModelInfo, Scored

__all__ = ["RayBackend", "ReplicaSpec", "plan_replicas", "start_replicas"]

RAY_MISSING = "Ray is not installed: pip install 'valueagent[ray]' (or run without --ray)"


@dataclass(frozen=True, kw_only=True)
class ReplicaSpec:
    """What every replica loads: the arguments of :func:`~valueagent.runtime.backend.load_backend`.
    ``model`` and an ``axis`` path must resolve on every node (a Hub id, or a path present on each)."""

    model: str
    axis: str | None = "default"
    device: str | None = None
    dtype: str | None = None
    max_batch: int = 8
    quantize: str | None = None
    prefix_cache_mb: int = 1024
    engine: str = "auto"  # --backend


@dataclass(frozen=True, kw_only=True)
class Placement:
    """How many replicas, and what each one holds: one GPU, or ``cpus`` cores (its torch threads)."""

    replicas: int
    gpus: int  # per replica: 1 on a GPU cluster, else 0
    cpus: int  # per replica


def plan_replicas(resources: dict[str, float], replicas: int | None) -> Placement:
    """One replica per GPU (``replicas`` of them if given), or ``replicas`` (default 1) that share the CPU
    cores evenly. Raises ``ValueError`` when the cluster cannot hold them."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if replicas is not None and replicas < 1:
        raise ValueError(f"--replicas {replicas}: give at least 1")
    if gpus:
        k = replicas or gpus
        if k > gpus:
            raise ValueError(f"--replicas {k} needs {k} GPUs and the cluster has {gpus}: one replica per GPU")
        return Placement(replicas=k, gpus=1, cpus=max(1, min(4, cpus // k)))
    k = replicas or 1
    if k > max(cpus, 1):
        raise ValueError(f"--replicas {k} on a cluster of {cpus} CPU cores and no GPU: at most one per core")
    return Placement(replicas=k, gpus=0, cpus=max(1, cpus // k))


def conversation_key(messages: Sequence[Message] | None, prompt: str | None) -> str:
    """The opening of a conversation (system and first user turn, or a raw prompt's start): every request
    of one task and attempt shares it, so they meet the same prefix cache."""
    opening: Any = [dict(m) for m in messages[:2]] if messages else (prompt or "")[:2000]
    return hashlib.sha256(json.dumps(opening, sort_keys=True).encode()).hexdigest()


class RayBackend:
    """Requests spread over replica actors; see the module docstring. ``served`` counts the requests each
    replica got, ``placement`` is recorded in the run's config (it is not part of what ``--resume`` checks)."""

    def __init__(self, replicas: Sequence[Any], *, placement: dict[str, Any], owns_cluster: bool = False) -> None:
        import ray

        if not replicas:
            raise ValueError("RayBackend needs at least one replica")
        self._replicas = list(replicas)
        self._owns_cluster = owns_cluster
        # Waits until every replica has loaded its model, so a load that fails anywhere fails here.
        infos: list[ModelInfo] = ray.get([r.info.remote() for r in self._replicas])
        if len({(i.model_id, i.revision, i.dtype, i.axis_sha256) for i in infos}) != 1:
            raise ValueError("the replicas loaded different models or axes: give a model and axis every node resolves "
                             "the same way")
        self._info = infos[0]
        self.axis, self.axis_name = ray.get(self._replicas[0].axis.remote())
        self.model_id = self._info.model_id
        self.placement = placement
        self.served = [0] * len(self._replicas)
        self._in_flight = [0] * len(self._replicas)
        self._route: dict[str, int] = {}

    def info(self) -> ModelInfo:
        return self._info

    async def generate(self, request: GenerationRequest) -> Generation:
        i = self._pick(conversation_key(request.messages, request.prompt))
        out: Generation = await self._call(i, self._replicas[i].generate.remote(request))
        return out

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        i = self._pick(conversation_key(messages, None))
        out: Scored = await self._call(i, self._replicas[i].score.remote(tuple(messages), completion))
        return out

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the replicas, and the local cluster when this backend started it."""
        import ray

        if not ray.is_initialized():
            return
        for actor in self._replicas:
            ray.kill(actor)
        if self._owns_cluster:
            ray.shutdown()

    def _pick(self, key: str) -> int:
        i = self._route.get(key)
        if i is None:
            i = min(range(len(self._replicas)), key=lambda j: (self._in_flight[j], self.served[j], j))
            self._route[key] = i
        self.served[i] += 1
        return i

    async def _call(self, i: int, ref: Any) -> Any:
        self._in_flight[i] += 1
        try:
            return await ref
        finally:
            self._in_flight[i] -= 1


class _Replica:
    """One model replica (made a Ray actor by :func:`start_replicas`): an in-process backend."""

    def __init__(self, spec: ReplicaSpec, threads: int) -> None:
        import torch

        from valueagent.runtime.backend import load_backend

        # Ray sets OMP_NUM_THREADS for the cores it granted; torch's own pool follows the same grant.
        torch.set_num_threads(threads)
        self.backend = load_backend(spec.model, axis=spec.axis, device=spec.device, dtype=spec.dtype,
                                    max_batch=spec.max_batch, quantize=spec.quantize,
                                    prefix_cache_mb=spec.prefix_cache_mb, backend=spec.engine)

    def info(self) -> ModelInfo:
        return self.backend.info()

    def axis(self) -> tuple[Any, str | None]:
        return getattr(self.backend, "axis", None), getattr(self.backend, "axis_name", None)

    async def generate(self, request: GenerationRequest) -> Generation:
        return await self.backend.generate(request)

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        return await self.backend.score(messages, completion)


def start_replicas(spec: ReplicaSpec, *, address: str | None = None, replicas: int | None = None) -> RayBackend:
    """Connect to the cluster at ``address`` (``"auto"``, ``"ray://HOST:10001"``, ...) or, without one, start a
    local cluster; start the replicas and wait until each has loaded the model. Raises ``ImportError`` when
    Ray is missing, ``ValueError`` when the cluster cannot hold the replicas."""
    if spec.model.startswith(("http://", "https://")):
        raise ValueError("--ray runs its own model replicas: give a model id or path, not a server URL")
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc

    owns = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True)
        owns = address is None and not os.environ.get("RAY_ADDRESS")
    try:
        plan = plan_replicas(ray.cluster_resources(), replicas)
        device = spec.device or ("cuda" if plan.gpus else "cpu")
        spec = ReplicaSpec(**{**asdict(spec), "device": device})
        actor = ray.remote(_Replica).options(num_gpus=plan.gpus, num_cpus=plan.cpus)
        actors = [actor.remote(spec, plan.cpus) for _ in range(plan.replicas)]
        placement = {"ray": address or "local", "replicas": plan.replicas, "per_replica": {"GPU": plan.gpus,
                                                                                          "CPU": plan.cpus}}
        return RayBackend(actors, placement=placement, owns_cluster=owns)
    except BaseException:
        if owns:
            ray.shutdown()
        raise
