"""sweeps.devices (issue 36, item 3): which GPUs each local worker sees, with fake device lists (no GPU here),
and the pool that hands each process a slot of its own."""

import sys
import threading

import pytest

from core.errors import UsageError
from sweeps import devices as D


def test_detect_gpus_from_env_then_nvidia_smi():
    assert D.detect_gpus({"CUDA_VISIBLE_DEVICES": "2,3, 5"}, smi=lambda: "0\n1\n") == ["2", "3", "5"]
    assert D.detect_gpus({"CUDA_VISIBLE_DEVICES": ""}, smi=lambda: "0\n1\n") == []  # set but empty: none
    assert D.detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert D.detect_gpus({}, smi=lambda: "0\n1\n2\n") == ["0", "1", "2"]
    assert D.detect_gpus({}, smi=lambda: None) == []  # no nvidia-smi: CPU only


def test_device_groups():
    gpus = [str(i) for i in range(8)]
    assert D.device_groups(gpus, 1) == [(g,) for g in gpus]
    assert D.device_groups(gpus, 2) == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]
    assert D.device_groups(gpus, 3) == [("0", "1", "2"), ("3", "4", "5")]  # 6, 7 unused
    assert D.device_groups(gpus, 8) == [tuple(gpus)]
    with pytest.raises(UsageError, match="only 8 GPU"):
        D.device_groups(gpus, 9)
    with pytest.raises(UsageError, match="at least 1"):
        D.device_groups(gpus, 0)


def test_worker_slots_gpu_machine():
    base = {"PATH": "/bin"}
    slots = D.worker_slots(2, None, 7, base=base, gpus=["0", "1", "2", "3", "4"])
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3"]
    assert all(s["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and s["PATH"] == "/bin" for s in slots)
    flat = [g for s in slots for g in s["CUDA_VISIBLE_DEVICES"].split(",")]
    assert len(flat) == len(set(flat))  # no device in two workers
    assert len(D.worker_slots(None, 3, 7, base=base, gpus=[str(i) for i in range(8)])) == 3  # max_parallel caps
    assert len(D.worker_slots(None, None, 7, base=base, gpus=[str(i) for i in range(8)])) == 8  # one per GPU
    mine = D.worker_slots(1, None, 7, base={"XLA_PYTHON_CLIENT_MEM_FRACTION": ".4"}, gpus=["0"])
    assert mine[0]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == ".4" and "XLA_PYTHON_CLIENT_PREALLOCATE" not in mine[0]
    # the launcher's own CUDA_VISIBLE_DEVICES is what it hands out
    slots = D.worker_slots(1, None, 7, base={"CUDA_VISIBLE_DEVICES": "4,6"})
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["4", "6"]


def test_worker_slots_cpu_only_keeps_todays_behaviour():
    base = {"PATH": "/bin", "A": "1"}
    slots = D.worker_slots(None, None, 3, base=base, gpus=[])
    assert slots == [base] * 3  # environment unchanged, default parallelism
    assert len(D.worker_slots(1, 2, 3, base=base, gpus=[])) == 2
    with pytest.raises(UsageError, match="no GPU visible"):
        D.worker_slots(2, None, 3, base=base, gpus=[])


def test_run_pool_never_shares_a_slot(tmp_path):
    slots = [{"SLOT": "a"}, {"SLOT": "b"}]
    dirs = []
    for i in range(5):
        (d := tmp_path / f"p{i}").mkdir()
        dirs.append(d)
    code = "import os, time; print(os.environ.get('SLOT'), time.time()); time.sleep(0.3); print(time.time())"
    seen, lock = [], threading.Lock()

    def report(d, rc, dt, i, n):
        with lock:
            seen.append((d.name, rc, n))

    D.run_pool(dirs, lambda d: [sys.executable, "-c", code], slots, report)
    assert sorted(s[0] for s in seen) == [d.name for d in dirs] and all(rc == 0 and n == 5 for _, rc, n in seen)
    spans = {"a": [], "b": []}
    for d in dirs:
        first, end = (d / "worker.log").read_text().split("\n")[:2]
        slot, start = first.split()
        spans[slot].append((float(start), float(end)))
    assert spans["a"] and spans["b"]  # both slots used
    for s in spans.values():  # within a slot, processes never overlap
        s.sort()
        assert all(a[1] <= b[0] for a, b in zip(s, s[1:]))


def test_worker_imports_without_submitit():
    """sweeps.worker (every local worker process) does not import submitit; only a Slurm checkpoint does."""
    import subprocess
    from pathlib import Path

    code = "import sys, sweeps.worker, sweeps.devices; print('submitit' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out
