"""`distil audit text|model|api`: test text, or a model, for a teacher's watermark
(docs/provenance.md).

Each command's options are the fields of its settings model in distil.audit.settings
(`TextAudit`, `ModelAudit`, `ApiAudit`), so a value out of range is refused in one line
before any file is read, model loaded or request sent.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from distil.audit.settings import ApiAudit, AuditError, ModelAudit, TextAudit
from distil.commands.options import field_help, options_from, settings_from

audit_app = typer.Typer(
    no_args_is_help=True, help="Test text or a model for a teacher's watermark (docs/provenance.md)."
)


def _argument(model: type, field: str) -> Any:
    return typer.Argument(help=field_help(model.model_fields[field]), show_default=False)


@audit_app.command("text")
@options_from(TextAudit)
def audit_text(files: Annotated[list[Path], _argument(TextAudit, "files")], **options: Any) -> None:
    """Test texts for the watermark: per document and pooled, de-duplicated."""
    _run(settings_from(TextAudit, options, AuditError, files=files))


@audit_app.command("model")
@options_from(ModelAudit)
def audit_model(model: Annotated[str, _argument(ModelAudit, "model")], **options: Any) -> None:
    """Test whether a model learnt from watermarked outputs: teacher-forced top-k predictions."""
    _run(settings_from(ModelAudit, options, AuditError, model=model))


@audit_app.command("api")
@options_from(ApiAudit)
def audit_api(url: Annotated[str, _argument(ApiAudit, "url")], **options: Any) -> None:
    """Test a model behind an API: prompt it, test what it generates."""
    _run(settings_from(ApiAudit, options, AuditError, url=url))


def _run(settings: TextAudit | ModelAudit | ApiAudit) -> None:
    from distil.audit.run import run_audit
    from distil.progress import quiet_libraries

    quiet_libraries()
    json_path, md_path, line = run_audit(settings)
    typer.echo(f"{line}; written to {md_path} and {json_path}")
