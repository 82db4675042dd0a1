"""`distil serve MODEL`: an OpenAI-compatible server over a local model (docs/serve.md).

Its options are the fields of `ServerSettings` (limits, batching, watermark) and
`StartSettings` (address, dtype, device, logging), in distil.server.settings.
"""

from typing import Annotated, Any

import typer

from distil.commands.options import field_help, options_from, settings_from
from distil.errors import DistilError
from distil.server.settings import ServeError, ServerSettings, StartSettings


@options_from(ServerSettings, StartSettings)
def serve(
    model: Annotated[
        str,
        typer.Argument(
            help="Model to serve: a folder, a hub id, or 'demo' (the shipped demo teacher).",
            show_default=False,
        ),
    ],
    served_name: Annotated[
        str | None,
        typer.Option(
            help=field_help(ServerSettings.model_fields["served_name"]) + " Default: MODEL.",
            show_default=False,
        ),
    ] = None,
    **options: Any,
) -> None:
    """Serve a model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions)."""
    options["served_name"] = served_name or model
    settings = settings_from(ServerSettings, options, ServeError)
    start = settings_from(StartSettings, options, ServeError)
    try:
        from distil.server.run import serve as run_server
    except ModuleNotFoundError as err:
        raise DistilError(f"distil serve needs {err.name}: pip install 'distil[serve]'") from None
    run_server(model, settings, start, echo=typer.echo)
