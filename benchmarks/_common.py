"""Helpers shared by the benchmark scripts: machine description, timing, JSON + markdown output.

Kept small and generic on purpose; nothing here knows about a particular method.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    """The checked-out commit (read-only query), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    """Where the benchmark ran: platform, CPU, cores, memory, library versions, JAX devices."""
    import jax

    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jax_version": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "numpy_version": np.__version__,
        "git_commit": _git_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }
    try:
        import sklearn_distill

        info["sklearn_distill_version"] = sklearn_distill.__version__
    except Exception:  # pragma: no cover - benchmarks must still describe the machine
        info["sklearn_distill_version"] = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gb"] = None
    return info


def machine_summary(info):
    """One line for a markdown report."""
    return (f"{info['cpu_model']} ({info['cpu_count']} logical cores), {info['platform']}, "
            f"JAX {info['jax_version']} on {', '.join(info['jax_devices'])}")


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


@contextmanager
def timer():
    """``with timer() as t: ...`` then ``t()`` is the elapsed wall time in seconds."""
    start = time.perf_counter()
    end = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def jsonable(value):
    """``value`` with NumPy arrays/scalars and paths turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path, payload):
    """Write ``payload`` (NumPy values allowed) as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(jsonable(payload), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_results(name, payload, lines, folder=RESULTS):
    """Write ``folder/name.json`` and ``folder/name.md`` (the markdown ``lines``) and print them."""
    write_json(os.path.join(folder, name + ".json"), payload)
    write_text(os.path.join(folder, name + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {os.path.join(folder, name)}.json/.md")


def markdown_table(headers, rows, align=None):
    """A GitHub markdown table; ``align`` is a string of 'l'/'r' per column (default: l then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def fmt_acc(mean, std=None, digits=1):
    """Accuracy in [0, 1] as a percentage, ``mean ± std``."""
    if mean is None:
        return "–"
    if std is None:
        return f"{100 * mean:.{digits}f}"
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"
