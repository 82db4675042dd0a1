"""The Hugging Face Hub: cards with the metadata the Hub reads, and `distil push`.

    write_model_card(RUN / "student", RUN)      # README.md: base_model, teacher, terms, ...
    dataset_metadata(...)                       # RUN/data/README.md's front matter (synth)
    push_run(RUN, "org/name", what="student")   # HfApi.create_repo + upload_folder

A shared layer below the stages: training writes the student's card when it ends, export
writes it beside every export, synth writes the dataset card, and `distil push` uploads one
folder of a run (distil.hub.push).
"""

from distil.hub.metadata import dataset_metadata, front_matter, hub_model_id, license_metadata, shown_model
from distil.hub.model_card import model_card, run_of, write_model_card

__all__ = [
    "dataset_metadata",
    "front_matter",
    "hub_model_id",
    "license_metadata",
    "model_card",
    "run_of",
    "shown_model",
    "write_model_card",
]
