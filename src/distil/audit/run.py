"""The audit commands end to end: read the inputs, run the mode, write the verdict.

    json_path, md_path, line = run_audit(TextAudit(files=[...], tokenizer="demo", out=out_dir))

Every bad input fails before any model is loaded or request sent: an option out of range
(refused by the settings model), a missing key variable, a missing, unreadable or empty
file, an unloadable tokenizer.
"""

import os
from pathlib import Path
from typing import Any

from distil.audit.settings import ApiAudit, AuditError, ModelAudit, TextAudit
from distil.audit.sources import Document, audit_tokenizer, read_documents
from distil.audit.verdict import headline, write_audit
from distil.errors import ModelError
from distil.fsutil import ensure_writable_dir
from distil.provenance import WatermarkKey


def run_audit(settings: TextAudit | ModelAudit | ApiAudit) -> tuple[Path, Path, str]:
    """Run the audit `settings` ask for (its type names the mode) and write OUT/audit.json and
    OUT/audit.md; their paths and the verdict's line."""
    key = WatermarkKey.from_env(settings.key_env)
    ensure_writable_dir(settings.out, "audit folder", "pass --out a folder you can write to")
    if isinstance(settings, TextAudit):
        result = _text(key, settings)
    elif isinstance(settings, ModelAudit):
        result = _model(key, settings)
    else:
        result = _api(key, settings)
    result.update(
        key_env=settings.key_env,
        settings=settings.model_dump(include={"scheme", "gamma", "context_width", "null_keys", "seed"}),
    )
    json_path, md_path, written = write_audit(settings.out, result, settings.alpha)
    return json_path, md_path, headline(written)


def _text(key: WatermarkKey, settings: TextAudit) -> dict[str, Any]:
    from distil.audit.modes import audit_text

    documents = read_documents(settings.files, settings.field)
    result = audit_text(documents, audit_tokenizer(settings.tokenizer), key, settings)
    return {**result, "source": ", ".join(str(f) for f in settings.files)}


def _model(key: WatermarkKey, settings: ModelAudit) -> dict[str, Any]:
    from distil.audit.modes import audit_model
    from distil.models import BUILTIN_MODELS
    from distil.recipe import TeacherSection
    from distil.teachers import open_teacher, white_box

    corpus, model = settings.corpus, settings.model
    documents = (
        read_documents(corpus, settings.field) if corpus else task_documents(settings.tasks, settings.seed)
    )
    if not Path(model).is_dir() and model not in ("demo", *BUILTIN_MODELS):
        raise ModelError(f"{model} is not a model folder; pass the folder of the model to audit")
    loaded = white_box(
        open_teacher(TeacherSection(model=model), device="cpu"), "audit model (teacher-forced predictions)"
    )
    result = audit_model(loaded.model, loaded.tokenizer, documents, key, settings, top_k=settings.top_k)
    corpus_name = (
        ", ".join(map(str, corpus)) if corpus else f"{settings.tasks} held-out items per task family"
    )
    return {**result, "source": f"{model} (corpus: {corpus_name})"}


def _api(key: WatermarkKey, settings: ApiAudit) -> dict[str, Any]:
    from distil.audit.modes import audit_api
    from distil.recipe import ApiSection, TeacherSection
    from distil.teachers import Sampling, open_teacher

    if settings.api_key_env and not os.environ.get(settings.api_key_env, "").strip():
        raise AuditError(
            f"the API key variable {settings.api_key_env} is not set; export "
            f"{settings.api_key_env}=<the key>, or leave out --api-key-env for an "
            "API without keys"
        )
    texts = (
        [d.text for d in read_documents([settings.prompts], "prompt", what="prompt")]
        if settings.prompts
        else [d.prompt or "" for d in task_documents(settings.tasks, settings.seed)]
    )
    tokenizer = audit_tokenizer(settings.tokenizer)
    section = ApiSection(
        base_url=settings.url, api_key_env=settings.api_key_env, tokenizer=settings.tokenizer
    )
    teacher = open_teacher(TeacherSection(model=settings.model, api=section), seed=settings.seed)
    sampling = Sampling(
        max_new_tokens=settings.max_tokens, temperature=settings.temperature, seed=settings.seed
    )
    result = audit_api(teacher, texts, tokenizer, key, settings, sampling)
    return {
        **result,
        "source": f"{settings.url} (model {settings.model})",
        "sampling": {"temperature": settings.temperature, "max_tokens": settings.max_tokens},
    }


def task_documents(per_task: int, seed: int) -> list[Document]:
    """`per_task` held-out items of every task family, prompt and reference answer: a corpus
    that no watermark touched."""
    from distil.tasks import generate_items

    items = generate_items("heldout", per_task=per_task, seed=seed)
    return [Document(f"{item.task}:{i}", item.answer, item.prompt) for i, item in enumerate(items)]
