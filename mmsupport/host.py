"""Which runtime is fastest on this host: a short timed probe, remembered per CPU.

The same code is fastest on different runtimes on different CPUs (ONNX Runtime embeds a batch of catalog texts at
1.05× PyTorch's speed on an AVX2 host and 0.67× on an AVX-512 one), so choices that depend on it are measured where
they run rather than guessed from flags. A verdict is kept in ``cache_dir/runtime-choices.json`` under the CPU's
signature, so each host probes once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

#: Another candidate replaces the first (preferred) one only when it takes less than this share of its time, so
#: that noise does not flip a choice between two runtimes that are as fast.
MARGIN = 0.9
#: Timed runs of each candidate, taken in turn (one of each, then again), after one untimed run of each; each
#: candidate's time is its fastest run. So a burst of other work on the host (the app loading its other models, a
#: neighbour on a shared VM) slows one run, not the verdict, which is kept for good.
ROUNDS = 3
_lock = threading.Lock()


def cpu_signature(*extra: str) -> str:
    """A short name for this CPU: its model and flags (and ``extra``, e.g. a library version)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((line for line in lines if line.startswith("model name")), "")
    flags = next((line for line in lines if line.startswith("flags")), "")
    text = "|".join([model, " ".join(sorted(flags.split())), *extra])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fastest(choice: str, candidates: dict[str, Callable[[], object]], cache_dir: Path | str) -> str:
    """The name of the fastest of ``candidates`` (each a call doing the same work) for ``choice`` on this CPU.

    Each runs once to warm up, then :data:`ROUNDS` times timed, in turn with the others; the first is kept unless
    another's fastest run takes under :data:`MARGIN` of its own. The verdict is read from, or written to, the
    cache, so later calls time nothing, until the candidates differ from those the verdict timed."""
    record = Path(cache_dir) / "runtime-choices.json"
    key = f"{choice}|{cpu_signature()}"
    with _lock:
        verdict = _read(record).get(key, {})
        if verdict.get("chosen") in candidates and set(verdict.get("seconds", candidates)) == set(candidates):
            return verdict["chosen"]
        for run in candidates.values():
            run()
        seconds = dict.fromkeys(candidates, float("inf"))
        for _ in range(ROUNDS):
            for name, run in candidates.items():
                started = time.perf_counter()
                run()
                seconds[name] = min(seconds[name], time.perf_counter() - started)
        first = next(iter(candidates))
        best = min(seconds, key=seconds.get)
        chosen = best if seconds[best] < MARGIN * seconds[first] else first
        logger.info("%s: %s on this CPU (probe seconds: %s)", choice, chosen,
                    ", ".join(f"{name} {value:.3f}" for name, value in seconds.items()))
        known = {**_read(record), key: {"chosen": chosen, "seconds": {n: round(s, 4) for n, s in seconds.items()}}}
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_suffix(f".{threading.get_ident()}.partial")
        partial.write_text(json.dumps(known, indent=1))
        partial.replace(record)
        return chosen


def _read(record: Path) -> dict:
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
