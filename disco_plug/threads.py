"""Intra-op threads chosen for the machine's load at the time of a call.

PyTorch's default is one intra-op thread per core. When other CPU-bound processes already hold the cores,
those threads wait on each other at every small op of an EM step (thousands per fit), and a fit slows by far
more than its share of the cores. `load_aware_threads` lowers torch's thread count for the duration of one
fit or query to the cores that are free: the cores this process may use minus the other runnable tasks (the
kernel's instantaneous count in /proc/loadavg), at least one, at most the count set before. On systems without
/proc/loadavg, or when the user has set the count, nothing changes beyond that cap.

The price: torch's reductions depend on the thread count, so two fits of the same data made under different
loads can differ in the last bits (about 1e-16 relative). `set_policy("fixed")` (or the environment variable
DISCO_PLUG_THREADS=fixed) keeps torch's own count for every call, and with it bit-identical repeats.

Measured on this project's 2-core machine, fit + 512 queries at d = 2, n = 1024 (benchmarks/speed.py has the
current figures): quiet 0.44 s with 2 threads; with a busy process on each core 2.03 s with 2 threads
(4.6x) and 1.23 s with 1 thread (2.8x).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import torch

__all__ = ["free_cores", "load_aware_threads", "set_policy", "POLICIES"]

_CHECK_EVERY = 0.5  # seconds between readings of /proc/loadavg (MCMC makes thousands of small queries)
_last: tuple[float, int] = (-1.0, 0)
POLICIES = ("load", "fixed")
_policy = os.environ.get("DISCO_PLUG_THREADS", "load")
if _policy not in POLICIES:
    raise ValueError(f"DISCO_PLUG_THREADS must be one of {', '.join(POLICIES)}, got {_policy!r}")


def set_policy(policy: str) -> str:
    """"load" (the default): fits and queries use the free cores (module docstring); "fixed": torch's own
    thread count, bit-identical results for repeated calls. Returns the previous policy."""
    global _policy
    if policy not in POLICIES:
        raise ValueError(f"unknown thread policy {policy!r}; choose one of {', '.join(POLICIES)}")
    previous, _policy = _policy, policy
    return previous


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _own_runnable() -> int:
    """Threads of this process that are runnable now (this one and torch's workers, which spin for a while
    after each parallel region), from /proc/self/task/*/stat; 1 where that cannot be read."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended between the listing and the read
            continue
        count += stat[stat.rindex(")") + 2] == "R"
    return max(1, count)


def free_cores() -> int:
    """Cores not taken by other processes' runnable tasks, at least 1 (all cores where the load cannot be
    read). This process's own runnable threads do not count: torch's workers still spin from the last
    parallel region when a fit follows a fit, and counting them halved the threads of every second call."""
    global _last
    now = time.monotonic()
    if now - _last[0] < _CHECK_EVERY:
        return _last[1]
    cores = _cores()
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])  # runnable tasks now, ours included
        free = max(1, cores - max(0, running - _own_runnable()))
    except (OSError, ValueError, IndexError):
        free = cores
    _last = (now, free)
    return free


@contextlib.contextmanager
def load_aware_threads() -> Iterator[int]:
    """Run the block with torch's intra-op threads lowered to free_cores() (never raised; unchanged under the
    "fixed" policy); yields the count."""
    before = torch.get_num_threads()
    threads = before if _policy == "fixed" else max(1, min(before, free_cores()))
    if threads == before:
        yield threads
        return
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
