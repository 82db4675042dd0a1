"""Teacher-side watermarking for `distil serve --watermark`: the served teacher, marked.

    key = watermark_key(settings)                    # from the variable it names; None if off
    teacher = marked_teacher(teacher, settings, key)  # a copy that marks, by the settings' scheme

Two schemes (docs/provenance.md): kgw adds a keyed green-list bias to the logits (what is
served, logprobs included, is the marked distribution); exp-min replaces the random draw of
sampled generation by a keyed one (`distil.server.expmin`: the distribution is unchanged).
The key is read from the environment once, at start, and held only as a digest; it never
reaches a log line, a response, the system fingerprint or /admin/stats.
"""

import copy

from distil.provenance import ExpMinSampler, KGWBias, WatermarkKey, WatermarkSpec
from distil.server.expmin import ExpMinTeacher
from distil.server.settings import ServeError, ServerSettings
from distil.teachers import LocalTeacher


def watermark_spec(settings: ServerSettings) -> WatermarkSpec | None:
    """The watermark's public settings, or None when serving unmarked."""
    if not settings.watermark:
        return None
    return WatermarkSpec(
        gamma=settings.watermark_gamma,
        delta=settings.watermark_delta,
        context_width=settings.watermark_context_width,
        scheme=settings.watermark_scheme,
    )


def watermark_key(settings: ServerSettings) -> WatermarkKey | None:
    """The key from the variable `settings.watermark_key_env` names (None when not marking)."""
    return WatermarkKey.from_env(settings.watermark_key_env) if settings.watermark else None


def marked_teacher(teacher: LocalTeacher, settings: ServerSettings, key: WatermarkKey | None) -> LocalTeacher:
    """`teacher` itself when not marking, else a copy (sharing the model) that marks."""
    spec = watermark_spec(settings)
    if spec is None:
        return teacher
    if key is None:
        raise ServeError(f"--watermark needs its key; set {settings.watermark_key_env} in the environment")
    if spec.scheme == "exp-min":
        return ExpMinTeacher(teacher, ExpMinSampler(key, spec))
    marked = copy.copy(teacher)
    marked.logit_bias = KGWBias(key, spec, teacher.model.get_output_embeddings().weight.shape[0])
    return marked


def describe(settings: ServerSettings) -> str:
    """One line for the start-up message (the settings and the variable's name, never the key)."""
    spec = watermark_spec(settings)
    if spec is None:
        return "no watermark"
    if spec.scheme == "exp-min":
        return (
            f"watermarked: exp-min (distortion-free; sampled text only), context "
            f"{spec.context_width} tokens, key from ${settings.watermark_key_env}"
        )
    return (
        f"watermarked: gamma {spec.gamma}, delta {spec.delta}, context {spec.context_width} "
        f"tokens, key from ${settings.watermark_key_env}"
    )
