"""The one way benchmarks/ runs PyTorch (issue 20): every torch_*.py imports this module before
torch, so every PyTorch figure in benchmarks/ is taken at PyTorch's best setting on these machines:

  - OMP_WAIT_POLICY=PASSIVE, set here before torch (and its OpenMP runtime) is loaded: with the
    default (active spinning) PyTorch 1.13 runs 2-6x slower on 2 shared cores
    (/work/shared/machine-notes.md). PT_TORCH_WAIT_POLICY=ACTIVE asks for the other policy, for a
    table row that shows the difference on purpose; nothing else changes it.
  - torch.set_num_threads(N) with N = paratrain's thread count (setup()).

setup() also prints one `torch_config=` line on stderr (version, threads, wait policy, CPU model),
so every log says what PyTorch ran with."""
import os
import sys

if "torch" in sys.modules:
    raise RuntimeError("import torch_common before torch: OMP_WAIT_POLICY must be set first")
os.environ["OMP_WAIT_POLICY"] = os.environ.get("PT_TORCH_WAIT_POLICY", "PASSIVE")

import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def setup(threads, seed=0):
    """Threads and seed for this process; returns torch."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    print(f"torch_config=torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY {os.environ['OMP_WAIT_POLICY']}, cpu {cpu_model()}", file=sys.stderr)
    return torch


def median_step_seconds(step, steps, warmup):
    """Runs step(i) warmup times untimed, then `steps` times; the median seconds of one step."""
    for i in range(warmup):
        step(i)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(warmup + i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
