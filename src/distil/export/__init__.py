"""Export a student for deployment and check that the exported files answer like PyTorch.

    from distil.export import export_run, OnnxGenerator

    result = export_run("runs/demo")                      # hf-float16/, onnx/, onnx-int8/, parity.json
    generator = OnnxGenerator(result.deployable["onnx-int8"])
    generator.generate(["Reverse the word: cat"])

`OnnxGenerator` needs only onnxruntime, numpy and tokenizers, so importing it (and this
package) never imports PyTorch; the export functions import it when first used.
"""

from typing import Any

from distil.errors import ExportError, ParityError
from distil.onnx_runtime import OnnxGenerator, PromptEncoder

_LAZY = {
    "ExportSection": "distil.recipe",
    "ExportResult": "distil.export.stage",
    "ThresholdsSection": "distil.recipe",
    "export_run": "distil.export.stage",
    "write_export": "distil.export.stage",
    "ExportFormat": "distil.export_formats",
    "VariantSpec": "distil.export_formats",
    "register_format": "distil.export_formats",
    "unregister_format": "distil.export_formats",
    "resolve_export_paths": "distil.export.stage",
    "export_hf": "distil.export.hf",
    "export_onnx": "distil.export.onnx",
    "quantize_int8": "distil.export.onnx",
}

__all__ = ["ExportError", "OnnxGenerator", "ParityError", "PromptEncoder", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the PyTorch-side functions on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'distil.export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
