"""The audit stage: was this text, or this model, made from a watermarked teacher?

    distil audit text answers.jsonl --key-env DISTIL_WATERMARK_KEY
    distil audit model runs/demo/student --key-env DISTIL_WATERMARK_KEY      # open weights
    distil audit api http://127.0.0.1:8000/v1 --model demo --key-env ...     # behind an API

Each mode turns its evidence into (context, token) tuples, de-duplicates them, scores them
under the key and reports the exact p-value, beside the same test run with random keys (the
empirical null). The score is the green count (binomial p-value) for the kgw scheme, the sum
of -log(1 - r) (gamma p-value) for exp-min (`--scheme`). Output: OUT/audit.json and OUT/audit.md.
Modules: `calibrate` (the test and its null), `sources` (files, corpora, tokenizers),
`modes` (text, model, api), `verdict` (the written outputs).
"""

from distil.audit.calibrate import AuditSettings, calibrated_test
from distil.audit.modes import audit_api, audit_model, audit_text
from distil.audit.verdict import write_audit

__all__ = ["AuditSettings", "audit_api", "audit_model", "audit_text", "calibrated_test", "write_audit"]
