"""Prometheus text exposition of the server's counters, written by hand (no registry, no global state)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, x: float) -> None:
        self.n += 1
        self.total += x
        for i, b in enumerate(self.buckets):
            if x <= b:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{_num(b)}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        tail = [f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {_num(self.total)}", f"{name}_count {self.n}"]
        return out + tail


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class Metrics:
    """Counts requests, tokens, concurrency and latency. ``max_batch`` is the backend worker's batch limit:
    requests in flight beyond it wait in its queue."""

    def __init__(self, *, max_batch: int) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.in_flight = 0
        self.rejected = 0
        self.cancelled = 0
        self.batch = Histogram(BATCH_BUCKETS)
        self.latency = Histogram(SECONDS_BUCKETS)

    def request(self, route: str, code: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, code)] += 1
            self.latency.observe(seconds)

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.batch.observe(min(self.in_flight, self.max_batch))

    def finished(self, *, prompt_tokens: int = 0, generated_tokens: int = 0) -> None:
        with self._lock:
            self.in_flight -= 1
            self.prompt_tokens += prompt_tokens
            self.generated_tokens += generated_tokens

    @property
    def queue_depth(self) -> int:
        return max(0, self.in_flight - self.max_batch)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP valueagent_requests_total HTTP requests answered, by route and status code.",
                "# TYPE valueagent_requests_total counter",
                *(f'valueagent_requests_total{{route="{r}",code="{c}"}} {n}'
                  for (r, c), n in sorted(self.requests.items())),
                "# HELP valueagent_generated_tokens_total Tokens generated.",
                "# TYPE valueagent_generated_tokens_total counter",
                f"valueagent_generated_tokens_total {self.generated_tokens}",
                "# HELP valueagent_prompt_tokens_total Prompt tokens of finished generations.",
                "# TYPE valueagent_prompt_tokens_total counter",
                f"valueagent_prompt_tokens_total {self.prompt_tokens}",
                "# HELP valueagent_requests_in_flight Model requests (generate, score) not yet answered.",
                "# TYPE valueagent_requests_in_flight gauge",
                f"valueagent_requests_in_flight {self.in_flight}",
                "# HELP valueagent_queue_depth Requests in flight beyond the worker's batch limit (waiting).",
                "# TYPE valueagent_queue_depth gauge",
                f"valueagent_queue_depth {self.queue_depth}",
                "# HELP valueagent_requests_rejected_total Requests refused because the queue was full (429).",
                "# TYPE valueagent_requests_rejected_total counter",
                f"valueagent_requests_rejected_total {self.rejected}",
                "# HELP valueagent_requests_cancelled_total Requests cancelled because their client disconnected.",
                "# TYPE valueagent_requests_cancelled_total counter",
                f"valueagent_requests_cancelled_total {self.cancelled}",
                "# HELP valueagent_batch_size Rows the worker can batch with a request when it arrives "
                "(requests in flight, capped at the batch limit).",
                "# TYPE valueagent_batch_size histogram",
                *self.batch.lines("valueagent_batch_size"),
                "# HELP valueagent_request_duration_seconds Time to answer a request.",
                "# TYPE valueagent_request_duration_seconds histogram",
                *self.latency.lines("valueagent_request_duration_seconds"),
            ]
        return "\n".join(lines) + "\n"
