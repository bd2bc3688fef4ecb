"""Inside each vLLM worker: the run's directions as shards of the worker's own parameters, and
grid points set in place from their coefficients alone.

`VllmTPGenerator` names `LandscapeWorker` as the engine's `worker_extension_cls`: vLLM mixes
it into the worker class of every tensor-parallel rank, and `LLM.collective_rpc(method, args)`
runs a method on all ranks at once. The directions cross to the workers once, as file paths;
a grid point is then a list of coefficients.

`load_directions` runs each direction file through the model's own `load_weights` with an
fp32 stand-in swapped into each target parameter's storage for the duration of the load, so
vLLM's loaders do the narrowing by rank and the fusing (q/k/v into qkv_proj, gate/up into
gate_up_proj) exactly as they do for the checkpoint; the stand-ins are then the direction's
shards. θ0 is read from the engine's own checkpoint through the same loaders, into stand-ins of
each parameter's dtype, and kept. `set_point` writes θ0 + Σ cᵢ·dᵢ into each parameter in place
with `landscape.perturb.perturbed`'s formula (in the parameter itself for fp32, in an fp32
buffer cast once otherwise, terms added in the directions' order, zero coefficients skipped),
so a shard is bitwise the slice of the weights the HF path computes; all-zero coefficients
copy θ0 back exactly.

Editing the live parameters is only right where the kernels read them, which is checked once
per engine: every target parameter has elements, every target layer is unquantized (and on
the CPU backend computes with torch's own `F.linear`), and θ0 through the loaders reproduces
every live shard bit for bit. When a check fails, the worker says why in one log line and
falls back to vLLM's in-worker `reload_weights`, fed at each point with checkpoint-format
tensors it builds from θ0 and the direction files (the layers' post-load processing, such as
CPU repacking, then runs again). The CPU backend's oneDNN prepacking empties every linear
weight, so there the fallback is what runs, unless the one switch, `unpack=True`
(LANDSCAPE_VLLM_CPU_UNPACK=1), gives the target layers plain weights and torch's `F.linear`
(what vLLM's own `_cpu_skip_gemm_dispatch` layers get) before the checks.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from landscape.directions.stream import checkpoint_index

log = logging.getLogger(__name__)

ROUTES = ("auto", "in-place", "reload")
_FP32_MAX = torch.finfo(torch.float32).max


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def vllm_name(model, name: str, params: dict) -> str | None:
    """The vLLM parameter a checkpoint tensor loads into (fused ones included), or None."""
    mapper = getattr(model, "hf_to_vllm_mapper", None)
    mapped = mapper.map_name(name) if mapper is not None else name
    if mapped in params:
        return mapped
    for fused, parts in (getattr(model, "packed_modules_mapping", None) or {}).items():
        for part in parts:
            if f".{part}." in name:
                candidate = name.replace(f".{part}.", f".{fused}.", 1)
                if candidate in params:
                    return candidate
    return name if name in params else None


class _Shard:
    """One target parameter of this rank: θ0, each direction's fp32 shard, and where the
    directions cover it (None: everywhere; a fused parameter may be covered in part)."""

    __slots__ = ("name", "param", "theta0", "dirs", "covered")

    def __init__(self, name, param, theta0):
        self.name, self.param, self.theta0 = name, param, theta0
        self.dirs: list[torch.Tensor] = []
        self.covered: torch.Tensor | None = None


class _State:
    def __init__(self, paths, names, index, groups):
        self.paths = [str(p) for p in paths]
        self.names = names  # the checkpoint names the directions cover, in file order
        self.index = index  # checkpoint name -> file, of the engine's own model folder
        self.groups = groups  # checkpoint names of every layer that holds a target
        self.route = "in-place"
        self.reason: str | None = None
        self.shards: list[_Shard] = []
        self.buffers: dict[tuple[str, torch.device], torch.Tensor] = {}

    def buffer(self, kind: str, p: torch.Tensor) -> torch.Tensor:
        key = (kind, p.device)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < p.numel():
            buf = self.buffers[key] = torch.empty(p.numel(), dtype=torch.float32, device=p.device)
        return buf[: p.numel()].view(p.shape)


def _read(files: dict[str, Path], names, dtype=None, fill=None):
    """(name, tensor) from safetensors files one at a time: cast to `dtype`, or, with
    `fill`, a tensor of that value in the stored shape (a coverage probe)."""
    from safetensors import safe_open

    for name in names:
        with safe_open(str(files[name]), framework="pt", device="cpu") as f:
            if fill is not None:
                shape = f.get_slice(name).get_shape()
                yield name, torch.full(shape, fill, dtype=torch.uint8)
                continue
            t = f.get_tensor(name)
        yield name, t if dtype is None else t.to(dtype)


class LandscapeWorker:
    """Methods vLLM adds to each worker (see the module's docstring)."""

    def load_directions(
        self,
        paths: list[str],
        placement: list[str] | None = None,
        unpack: bool = False,
        route: str = "auto",
    ) -> dict:
        """Load the direction files (safetensors in the model's checkpoint names, all over the
        same names) once; `placement` per direction: "device" (default) or "host" (pinned
        when CUDA is present, streamed to the device tensor by tensor at each point).
        Returns the route taken ("in-place" or "reload"), why, and the bytes held."""
        from safetensors import safe_open

        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        from landscape.generate.vllm import _quiet_vllm_logs

        _quiet_vllm_logs()
        model = self.get_model()
        params = dict(model.named_parameters())
        names = None
        for p in paths:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                keys = list(f.keys())
                meta = (f.metadata() or {}).get("landscape.names")
            order = json.loads(meta) if meta else keys
            if names is None:
                names = order
            elif sorted(order) != sorted(names):
                raise ValueError(f"direction {p} covers other tensors than {paths[0]}")
        names = names or []
        index = checkpoint_index(self.vllm_config.model_config.model)
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"direction tensor {missing[0]!r} is not in the model's checkpoint")
        mapped = {n: vllm_name(model, n, params) for n in names}
        modules = {v.rpartition(".")[0] for v in mapped.values() if v is not None}
        groups = [
            n
            for n in index
            if (v := vllm_name(model, n, params)) and v.rpartition(".")[0] in modules
        ]
        if any(v is None for v in mapped.values()):
            groups = list(index)  # a layer we cannot name: the fallback pushes every tensor
        st = self._landscape = _State(paths, names, index, groups)
        placement = list(placement or ["device"] * len(paths))

        reason = "asked for" if route == "reload" else None
        unnamed = [n for n, v in mapped.items() if v is None]
        if reason is None and unnamed:
            reason = f"checkpoint tensor {unnamed[0]!r} has no parameter of its own in vLLM's model"
        targets = list(dict.fromkeys(v for v in mapped.values() if v is not None))
        if reason is None and unpack and _on_cpu():
            _unpack(model, {model.get_submodule(v.rpartition(".")[0]) for v in targets})
            params = dict(model.named_parameters())
            with torch.no_grad():
                model.load_weights(_read(index, groups))
        if reason is None:
            reason = _layout_problem(model, params, targets)
        if reason is None:
            own = [n for n in groups if vllm_name(model, n, params) in targets]
            theta0 = _through_loaders(model, params, targets, _read(index, own), None)
            bad = [v for v in targets if not _same_bits(theta0[v], params[v].data)]
            if bad:
                reason = f"θ0 through the loaders differs from the live {bad[0]!r}"
        if reason is not None:
            st.route, st.reason = "reload", reason
            log.debug("perturbing through reload_weights: %s", reason)  # the driver says it
            return self._landscape_report()

        pin = torch.cuda.is_available()
        covered = _through_loaders(
            model, params, targets, _read(index, names, fill=1), torch.uint8, "cpu"
        )
        st.shards = [_Shard(v, params[v], theta0[v]) for v in targets]
        for s in st.shards:
            c = covered[s.name].bool()
            s.covered = None if bool(c.all()) else c.to(s.param.device)
        for path, where in zip(paths, placement):
            device = "cpu" if where == "host" else None
            files = {n: Path(path) for n in names}
            d = _through_loaders(model, params, targets, _read(files, names), torch.float32, device)
            for s in st.shards:
                t = d.pop(s.name)
                s.dirs.append(t.pin_memory() if where == "host" and pin else t)
        return self._landscape_report()

    def _landscape_report(self) -> dict:
        st = self._landscape
        held = sum(t.numel() * t.element_size() for s in st.shards for t in (s.theta0, *s.dirs))
        return {"route": st.route, "reason": st.reason, "params": len(st.shards), "bytes": held}

    def set_point(self, coeffs: list[float]) -> str | None:
        """θ0 + Σ cᵢ·dᵢ in every target parameter; None, or the name of a parameter that came
        out non-finite (every parameter is then back at θ0)."""
        st = self._landscape
        coeffs = [float(c) for c in coeffs]
        if any(not abs(c) <= _FP32_MAX for c in coeffs):
            return "a coefficient"
        active = [(i, c) for i, c in enumerate(coeffs) if c != 0.0]
        if st.route == "reload":
            return self._landscape_reload(active)
        bad = None
        with torch.no_grad():
            finite = []
            for s in st.shards:
                p = s.param
                if not active or p.numel() == 0:
                    p.copy_(s.theta0)
                    continue
                w = p if p.dtype == torch.float32 else st.buffer("sum", p)
                w.copy_(s.theta0)
                for i, c in active:
                    t = s.dirs[i]
                    if t.device != p.device:
                        t = st.buffer("stage", p).copy_(t, non_blocking=True)
                    w.add_(t, alpha=c)
                if w is not p:
                    p.copy_(w)
                if s.covered is not None:  # outside the covered part the HF path leaves θ0
                    p.copy_(torch.where(s.covered, p, s.theta0))
                finite.append(torch.isfinite(torch.stack(torch.aminmax(p))).all())
            if finite and not bool(torch.stack(finite).all()):
                bad = next(s.name for s in st.shards if not bool(torch.isfinite(s.param).all()))
                for s in st.shards:
                    s.param.copy_(s.theta0)
        return bad

    def _landscape_reload(self, active: list[tuple[int, float]]) -> str | None:
        """The fallback: every tensor of the target layers in checkpoint format, built here
        from θ0 and the direction files with `perturbed`'s formula, through reload_weights."""
        st = self._landscape
        dtype = self.vllm_config.model_config.dtype
        covered = set(st.names)
        files = [{n: Path(p) for n in st.names} for p in st.paths]
        bad: list[str] = []

        def tensors():
            for name, t0 in _read(st.index, st.groups, dtype):
                if not active or name not in covered:
                    yield name, t0
                    continue
                w = t0 if t0.dtype == torch.float32 else t0.float()
                for i, c in active:
                    _, d = next(_read(files[i], [name]))
                    w.add_(d, alpha=c)
                out = w.to(dtype)
                if not bad and not bool(torch.isfinite(out).all()):
                    bad.append(name)
                yield name, out

        with _quiet_partial_reload():
            self.reload_weights(weights_iterator=tensors(), is_checkpoint_format=True)
        if bad:
            self._landscape_reload([])
            return bad[0]
        return None

    def landscape_state(self) -> dict:
        """What the tests compare: this rank, the route, and for the in-place route each
        target parameter's live shard, θ0 and direction shards (CPU copies)."""
        from vllm.distributed import get_tensor_model_parallel_rank

        st = self._landscape

        def cpu(t):
            return t.detach().to("cpu", copy=True)

        return {
            "rank": get_tensor_model_parallel_rank(),
            "route": st.route,
            "reason": st.reason,
            "live": {s.name: cpu(s.param) for s in st.shards},
            "theta0": {s.name: cpu(s.theta0) for s in st.shards},
            "dirs": [{s.name: cpu(s.dirs[i]) for s in st.shards} for i in range(len(st.paths))],
        }


class _DropPartial(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (
            text.endswith(": Failed to load weights")
            or text.startswith("Following weights were not loaded")
        )


_RELOAD_LOGGERS = (
    "vllm.model_executor.model_loader.reload.layerwise",
    "vllm.model_executor.model_loader.reload.inplace",
)


@contextmanager
def _quiet_partial_reload():
    """Only the target layers are reloaded: vLLM's notes that the others (norms, embeddings)
    got no weights, and kept theirs, say nothing here."""
    f = _DropPartial()
    for name in _RELOAD_LOGGERS:
        logging.getLogger(name).addFilter(f)
    try:
        yield
    finally:
        for name in _RELOAD_LOGGERS:
            logging.getLogger(name).removeFilter(f)


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _through_loaders(model, params, targets, items, dtype, device=None) -> dict:
    """Run `items` (checkpoint name, full tensor) through the model's own loaders into
    zero stand-ins of the target parameters (of `dtype`, default each parameter's; on
    `device`, default each parameter's); the parameters keep their storage."""
    stand = {
        v: torch.zeros(
            params[v].shape, dtype=dtype or params[v].dtype, device=device or params[v].device
        )
        for v in targets
    }
    kept = {v: params[v].data for v in targets}
    try:
        for v in targets:
            params[v].data = stand[v]
        with torch.no_grad():
            model.load_weights(items)
    finally:
        for v in targets:
            params[v].data = kept[v]
    return stand


def _layout_problem(model, params, targets) -> str | None:
    """Why editing the live parameters would not reach the kernels, or None."""
    cpu = _on_cpu()
    for v in targets:
        if params[v].numel() == 0:
            return f"{v!r} is empty (its layer keeps a repacked copy: CPU weight prepacking)"
        module = model.get_submodule(v.rpartition(".")[0])
        method = getattr(module, "quant_method", None)
        if method is not None and not type(method).__name__.startswith("Unquantized"):
            return f"{v!r} is computed by {type(method).__name__}, not an unquantized layer"
        if (
            cpu
            and hasattr(module, "cpu_linear")
            and module.cpu_linear is not torch.nn.functional.linear
        ):
            return f"{v!r}'s layer computes with a prepacked copy of it on the CPU backend"
    return None


def _unpack(model, modules) -> None:
    """The CPU switch: each target linear layer whose weight prepacking emptied gets a plain
    weight again (made by its own quant method, so its loaders work) and torch's F.linear."""
    from vllm.model_executor.layers.linear import WEIGHT_LOADER_V2_SUPPORTED, LinearBase

    for m in modules:
        if not isinstance(m, LinearBase) or m.weight.numel() > 0:
            continue
        method = m.quant_method
        v2 = type(method).__name__ in WEIGHT_LOADER_V2_SUPPORTED
        del m.weight
        method.create_weights(
            layer=m,
            input_size_per_partition=getattr(m, "input_size_per_partition", m.input_size),
            output_partition_sizes=m.output_partition_sizes,
            input_size=m.input_size,
            output_size=m.output_size,
            params_dtype=m.params_dtype,
            weight_loader=m.weight_loader_v2 if v2 else m.weight_loader,
        )
        m.cpu_linear = torch.nn.functional.linear
    log.info("landscape: CPU linear layers unpacked for in-place edits")


__all__ = ["LandscapeWorker", "vllm_name"]
