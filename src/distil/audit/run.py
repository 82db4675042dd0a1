"""The audit commands end to end: read the inputs, run the mode, write the verdict.

    json_path, md_path, line = run_audit("text", out_dir, key_env, settings, alpha,
                                         files=[...], tokenizer="demo")

Every bad input fails before any model is loaded or request sent: a missing key variable,
a missing or empty file, an unloadable tokenizer.
"""

from pathlib import Path
from typing import Any

from distil.audit.calibrate import AuditSettings
from distil.audit.sources import Document, audit_tokenizer, read_documents
from distil.audit.verdict import headline, write_audit
from distil.errors import DataError, ModelError
from distil.fsutil import ensure_writable_dir
from distil.provenance import WatermarkKey


def run_audit(mode: str, out_dir: Path, key_env: str, settings: AuditSettings, alpha: float,
              **inputs: Any) -> tuple[Path, Path, str]:
    """Run audit `mode` (text, model or api) and write OUT/audit.json and OUT/audit.md."""
    key = WatermarkKey.from_env(key_env)
    ensure_writable_dir(out_dir, "audit folder", "pass --out a folder you can write to")
    result = {"text": _text, "model": _model, "api": _api}[mode](key, settings, **inputs)
    result.update(key_env=key_env, settings={"scheme": settings.scheme, "gamma": settings.gamma,
                                             "context_width": settings.context_width,
                                             "null_keys": settings.null_keys, "seed": settings.seed})
    json_path, md_path, written = write_audit(out_dir, result, alpha)
    return json_path, md_path, headline(written)


def _text(key: WatermarkKey, settings: AuditSettings, files: list[Path], tokenizer: str,
          field: str | None = None) -> dict[str, Any]:
    from distil.audit.modes import audit_text

    documents = read_documents(files, field)
    result = audit_text(documents, audit_tokenizer(tokenizer), key, settings)
    return {**result, "source": ", ".join(str(f) for f in files)}


def _model(key: WatermarkKey, settings: AuditSettings, model: str, corpus: list[Path],
           tasks: int, top_k: int, field: str | None = None) -> dict[str, Any]:
    from distil.audit.modes import audit_model
    from distil.models import BUILTIN_MODELS
    from distil.recipe import TeacherSection
    from distil.teachers import open_teacher, white_box

    documents = read_documents(corpus, field) if corpus else task_documents(tasks, settings.seed)
    if not Path(model).is_dir() and model not in ("demo", *BUILTIN_MODELS):
        raise ModelError(f"{model} is not a model folder; pass the folder of the model to audit")
    loaded = white_box(open_teacher(TeacherSection(model=model), device="cpu"),
                       "audit model (teacher-forced predictions)")
    result = audit_model(loaded.model, loaded.tokenizer, documents, key, settings, top_k=top_k)
    corpus_name = ", ".join(map(str, corpus)) if corpus else f"{tasks} held-out items per task family"
    return {**result, "source": f"{model} (corpus: {corpus_name})"}


def _api(key: WatermarkKey, settings: AuditSettings, url: str, model: str, prompts: Path | None,
         tasks: int, tokenizer: str, api_key_env: str | None, max_tokens: int,
         temperature: float) -> dict[str, Any]:
    from distil.audit.modes import audit_api
    from distil.recipe import ApiSection, TeacherSection
    from distil.teachers import Sampling, open_teacher

    texts = ([d.prompt or d.text for d in read_documents([prompts], "prompt")] if prompts
             else [d.prompt for d in task_documents(tasks, settings.seed)])
    loaded_tokenizer = audit_tokenizer(tokenizer)
    section = ApiSection(base_url=url, api_key_env=api_key_env, tokenizer=tokenizer)
    teacher = open_teacher(TeacherSection(model=model, api=section), seed=settings.seed)
    sampling = Sampling(max_new_tokens=max_tokens, temperature=temperature, seed=settings.seed)
    result = audit_api(teacher, texts, loaded_tokenizer, key, settings, sampling)
    return {**result, "source": f"{url} (model {model})"}


def task_documents(per_task: int, seed: int) -> list[Document]:
    """Held-out items of every task family, prompt and reference answer: a corpus that no
    watermark touched."""
    from distil.tasks import generate_items

    if per_task < 1:
        raise DataError("pass a corpus (--corpus FILES) or --tasks N with N >= 1")
    return [Document(f"{item.task}:{i}", item.answer, item.prompt)
            for i, item in enumerate(generate_items("heldout", per_task=per_task, seed=seed))]
