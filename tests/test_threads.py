"""Load-aware intra-op threads (disco_plug.threads)."""

import pytest
import torch

from disco_plug import threads


def _fake_load(monkeypatch, tmp_path, running: int, cores: int = 4, own: int = 1) -> None:
    path = tmp_path / "loadavg"
    path.write_text(f"1.00 1.00 1.00 {running}/100 1234\n")
    real_open = open
    monkeypatch.setattr(threads, "open", lambda p, *a, **k: real_open(path if p == "/proc/loadavg" else p, *a, **k),
                        raising=False)
    monkeypatch.setattr(threads, "_cores", lambda: cores)
    monkeypatch.setattr(threads, "_own_runnable", lambda: own)
    monkeypatch.setattr(threads, "_last", (-1.0, 0))


def test_free_cores_counts_the_other_runnable_tasks(monkeypatch, tmp_path):
    _fake_load(monkeypatch, tmp_path, running=3)  # this process and two others on 4 cores
    assert threads.free_cores() == 2
    _fake_load(monkeypatch, tmp_path, running=9)
    assert threads.free_cores() == 1  # never below one


def test_this_process_spinning_workers_are_not_load(monkeypatch, tmp_path):
    _fake_load(monkeypatch, tmp_path, running=3, cores=4, own=3)  # our main thread and two spinning workers
    assert threads.free_cores() == 4
    _fake_load(monkeypatch, tmp_path, running=5, cores=4, own=3)  # and two other tasks
    assert threads.free_cores() == 2


def test_own_runnable_counts_threads_of_this_process():
    import os
    import threading
    import time

    assert 1 <= threads._own_runnable() <= len(os.listdir("/proc/self/task"))
    stop = threading.Event()

    def busy() -> None:  # matmuls release the GIL: this thread stays runnable beside the main one
        a = torch.randn(256, 256)
        while not stop.is_set():
            a = (a @ a).tanh()

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        time.sleep(0.05)
        seen = max(threads._own_runnable() for _ in range(50))
    finally:
        stop.set()
        worker.join()
    assert seen >= 2


def test_load_aware_threads_lowers_and_restores_but_never_raises(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _fake_load(monkeypatch, tmp_path, running=4, cores=2)
        with threads.load_aware_threads() as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        _fake_load(monkeypatch, tmp_path, running=1, cores=8)  # 8 free cores: the user's 2 threads are kept
        with threads.load_aware_threads() as n:
            assert n == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_unreadable_load_keeps_every_core(monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("no /proc")
    monkeypatch.setattr(threads, "open", fail, raising=False)
    monkeypatch.setattr(threads, "_cores", lambda: 3)
    monkeypatch.setattr(threads, "_last", (-1.0, 0))
    assert threads.free_cores() == 3


def test_fixed_policy_keeps_torch_threads_and_bad_policies_are_refused(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    previous = threads.set_policy("fixed")
    try:
        torch.set_num_threads(2)
        _fake_load(monkeypatch, tmp_path, running=9, cores=2)
        with threads.load_aware_threads() as n:
            assert n == 2 and torch.get_num_threads() == 2
    finally:
        threads.set_policy(previous)
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="unknown thread policy 'fast'"):
        threads.set_policy("fast")
