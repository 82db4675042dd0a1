"""The audit stage: was this text, or this model, made from a watermarked teacher?

    distil audit text answers.jsonl --key-env DISTIL_WATERMARK_KEY
    distil audit model runs/demo/student --key-env DISTIL_WATERMARK_KEY      # open weights
    distil audit api http://127.0.0.1:8000/v1 --model demo --key-env ...     # behind an API

Each mode turns its evidence into (context, token) tuples, de-duplicates them, scores them
under the key and reports the exact p-value, beside the same test run with random keys (the
empirical null). The score is the green count (binomial p-value) for the kgw scheme, the sum
of -log(1 - r) (gamma p-value) for exp-min (`--scheme`). Output: OUT/audit.json and OUT/audit.md.
Modules: `settings` (what each mode is asked, validated), `calibrate` (the test and its
null), `sources` (files, corpora, tokenizers), `modes` (text, model, api), `run` (a mode end
to end), `verdict` (the written outputs). Names load on first use, so the command line reads
the settings without importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    **dict.fromkeys(
        ["ApiAudit", "AuditError", "AuditSettings", "ModelAudit", "TextAudit"], "distil.audit.settings"
    ),
    "calibrated_test": "distil.audit.calibrate",
    **dict.fromkeys(["audit_api", "audit_model", "audit_text"], "distil.audit.modes"),
    "run_audit": "distil.audit.run",
    "write_audit": "distil.audit.verdict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distil.audit' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
