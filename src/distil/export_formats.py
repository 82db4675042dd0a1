"""The export-format registry: one entry per format, read by every place that names formats.

    from distil.export_formats import ExportFormat, VariantSpec, register_format

    register_format(ExportFormat(name="safetensors-fp32", summary="...", variants=...,
                                 write="my_pkg.fmt:write", open="my_pkg.fmt:open", ...))

An entry says what a format is called (`export.formats`, `distil export --format`), what it
needs (Python modules to write it and to run it, other formats written first), what fails
before any work (`precheck`), how each of its variants is written, which parity thresholds
each is held to, the format's own checks (GGUF's read-back), and how parity and the bench
open a written variant. The export stage, parity, the bench, the recipe's allowed values and
the CLI help loop over this table; parity.json records each variant's format, so the bench
and the report read what they need from the run folder.

Steps are given as callables or as "module:attribute" paths, imported when the step runs:
the built-in formats name their steps by path, so this table (which the recipe reads) never
imports the export stage, PyTorch or onnxruntime. The bench opens a variant in a fresh
interpreter, so `bench_open` must be importable by its module path.
"""

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

Step = Callable[..., Any] | str
"""A callable, or the "module:attribute" path of one (imported when first used)."""


@dataclass(frozen=True)
class VariantSpec:
    """One folder a format writes: its name under the export folder, the parity thresholds it
    is held to (a key of `export.thresholds`), and what sets it apart within its format."""

    name: str
    kind: str
    setting: str = ""
    """E.g. the dtype of an `hf` folder, the type of a GGUF file."""


@dataclass(frozen=True)
class ExportFormat:
    """Everything distil needs to know about one export format."""

    name: str
    """What `export.formats` and `distil export --format` call it."""
    summary: str
    """One line for the CLI help and the recipe reference."""
    variants: Callable[[Any], list[VariantSpec]]
    """The folders it writes for an ExportSection."""
    write: Step
    """write(loaded, folder, variant, config): write one variant into `folder`."""
    open: Step
    """open(folder, config) -> a parity Variant (continuation_logits, generate_ids)."""
    runtime: str
    """What runs a variant (`pytorch`, `onnxruntime`, `llama.cpp`): parity.json and the bench."""
    bench_open: Step | None = None
    """bench_open(folder, threads) -> (runner, parameters, precision), in the bench's own
    interpreter; the runner's generate_ids takes stop_at_eos and on_token. None: not timed."""
    bench_by_default: bool = True
    """Timed by `distil bench` when no --variant is named."""
    needs: dict[str, str] = field(default_factory=dict)
    """Python modules the writer imports -> how to install them; checked before any work."""
    runtime_needs: dict[str, str] = field(default_factory=dict)
    """Modules the runtime imports -> how to install them. Without them parity runs only the
    format's own `check` (the runtime check is marked skipped) and the bench skips it."""
    requires: tuple[str, ...] = ()
    """Formats written before this one (onnx-int8 quantises the onnx folder)."""
    precheck: Step | None = None
    """precheck(loaded, config): ExportError now for what would fail later."""
    check: Step | None = None
    """check(loaded, folder, config) -> (fields for parity.json, failures): the format's own
    checks, run even without its runtime."""
    folders: tuple[str, ...] = ()
    """Glob patterns of its variants' folder names (to tell the format of an older export)."""
    default: bool = False
    """Exported when the recipe names no formats."""


_REGISTRY: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add a format; ValueError for a name already taken or a required format not registered."""
    if fmt.name in _REGISTRY:
        raise ValueError(f"an export format named {fmt.name!r} is already registered")
    unknown = [name for name in fmt.requires if name not in _REGISTRY]
    if unknown:
        raise ValueError(
            f"export format {fmt.name!r} requires {unknown}, which are not registered; register them first"
        )
    _REGISTRY[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove a format (and nothing else); ValueError when another format requires it."""
    users = [f.name for f in _REGISTRY.values() if name in f.requires]
    if users:
        raise ValueError(f"export formats {users} require {name!r}; unregister them first")
    _REGISTRY.pop(name, None)


def export_format(name: str) -> ExportFormat:
    """The registered format called `name`; KeyError naming the known ones otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown export format {name!r}; choose from {', '.join(format_names())}")
    return _REGISTRY[name]


def format_names() -> list[str]:
    """Every registered format, in registration order."""
    return list(_REGISTRY)


def default_formats() -> list[str]:
    """What `export.formats` holds when a recipe names none."""
    return [name for name, fmt in _REGISTRY.items() if fmt.default]


def unknown_formats_error(names: Iterable[str], where: str) -> str | None:
    """What is wrong with the format names given in `where`, or None when all are known."""
    unknown = [name for name in names if name not in _REGISTRY]
    if not unknown:
        return None
    return f"unknown export formats {unknown} in {where}; choose from {', '.join(format_names())}"


def with_requirements(names: Iterable[str]) -> list[ExportFormat]:
    """The named formats and every format they require, in registration order."""
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        fmt = export_format(pending.pop())
        if fmt.name not in wanted:
            wanted.add(fmt.name)
            pending += fmt.requires
    return [fmt for name, fmt in _REGISTRY.items() if name in wanted]


def format_of_variant(name: str, record: dict[str, Any] | None = None) -> ExportFormat | None:
    """The format of an exported variant: the one its parity.json record names, else (an
    export written before records named it) the one whose folder patterns match."""
    named = (record or {}).get("format")
    if named is not None:
        return _REGISTRY.get(named)
    return next((f for f in _REGISTRY.values() if any(fnmatch(name, p) for p in f.folders)), None)


def missing_modules(modules: dict[str, str]) -> dict[str, str]:
    """The modules of `modules` (module -> how to install it) that cannot be imported here."""
    return {module: hint for module, hint in modules.items() if importlib.util.find_spec(module) is None}


def missing_runtime(fmt: ExportFormat) -> str | None:
    """Why `fmt`'s runtime cannot run here ("llama-cpp-python is not installed"), or None."""
    missing = list(missing_modules(fmt.runtime_needs).values())
    if not missing:
        return None
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"


def resolve(step: Step) -> Callable[..., Any]:
    """The callable a step names."""
    if callable(step):
        return step
    module, _, attribute = step.partition(":")
    return getattr(importlib.import_module(module), attribute)


def step_path(step: Step) -> str:
    """The "module:attribute" path of a step (for a fresh interpreter to import)."""
    return step if isinstance(step, str) else f"{step.__module__}:{step.__qualname__}"


GGUF_KINDS = {"f16": "half", "q8_0": "int8", "q4_k_m": "int4"}
"""Which parity thresholds (export.thresholds) each GGUF type is held to."""
_EXPORT_EXTRA = "pip install -e '.[export]'"
_LLAMA_CPP = "llama-cpp-python"


def _hf_variants(config: Any) -> list[VariantSpec]:
    return [VariantSpec(f"hf-{config.dtype}", "half", config.dtype)]


def _gguf_variants(config: Any) -> list[VariantSpec]:
    return [VariantSpec(f"gguf-{t}", GGUF_KINDS[t], t) for t in dict.fromkeys(config.gguf)]


def _register_builtins() -> None:
    register_format(
        ExportFormat(
            name="hf",
            summary="half-precision safetensors folder (transformers, vLLM, TGI)",
            variants=_hf_variants,
            write="distil.export.hf:write_hf_variant",
            open="distil.export.parity:open_torch",
            runtime="pytorch",
            bench_open="distil.bench.worker:open_saved_dtype",
            bench_by_default=False,
            folders=("hf-*",),
            default=True,
        )
    )
    register_format(
        ExportFormat(
            name="onnx",
            summary="float32 ONNX graph with a key/value cache",
            variants=lambda config: [VariantSpec("onnx", "float32", "float32")],
            write="distil.export.onnx:write_onnx_variant",
            open="distil.export.parity:open_onnx",
            runtime="onnxruntime",
            bench_open="distil.bench.worker:open_onnx",
            needs={"onnx": _EXPORT_EXTRA, "onnxscript": _EXPORT_EXTRA, "onnxruntime": _EXPORT_EXTRA},
            runtime_needs={"onnxruntime": "onnxruntime"},
            precheck="distil.export.onnx:check_onnx_export",
            folders=("onnx",),
            default=True,
        )
    )
    register_format(
        ExportFormat(
            name="onnx-int8",
            summary="the ONNX graph with its output head and embedding table in 8-bit blocks (implies onnx)",
            variants=lambda config: [VariantSpec("onnx-int8", "int8", "int8")],
            write="distil.export.onnx:write_int8_variant",
            open="distil.export.parity:open_onnx",
            runtime="onnxruntime",
            bench_open="distil.bench.worker:open_onnx",
            needs={"onnxruntime": _EXPORT_EXTRA},
            runtime_needs={"onnxruntime": "onnxruntime"},
            requires=("onnx",),
            folders=("onnx-int8",),
            default=True,
        )
    )
    register_format(
        ExportFormat(
            name="gguf",
            summary="one llama.cpp / Ollama folder per type in export.gguf",
            variants=_gguf_variants,
            write="distil.export.gguf_variants:write_gguf_variant",
            open="distil.export.parity:open_llama_cpp",
            runtime="llama.cpp",
            bench_open="distil.bench.worker:open_llama_cpp",
            needs={"gguf": f"{_EXPORT_EXTRA} (or pip install gguf)"},
            runtime_needs={"llama_cpp": _LLAMA_CPP},
            precheck="distil.export.gguf_variants:check_gguf_export",
            check="distil.export.gguf_check:check_gguf_variant",
            folders=("gguf-*",),
            default=True,
        )
    )


_register_builtins()
