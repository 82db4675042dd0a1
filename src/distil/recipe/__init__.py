"""The recipe: one YAML file that drives a run, as typed sections, one module per stage.

    from distil.recipe import load_recipe
    recipe = load_recipe("recipes/tiny.yaml", ["train.max_steps=20"])

`job` assembles the sections into `Recipe`; `signal` decides once where the teacher's
signal comes from (`teacher_signal(recipe)`); `load` reads YAML, applies overrides and turns
validation errors into one `RecipeError`; `reference` prints every field's docstring.
"""

from distil.recipe.api import ApiSection, BudgetSection, PriceSection
from distil.recipe.bench import BenchSection
from distil.recipe.capture import CaptureSection
from distil.recipe.data import DataSection
from distil.recipe.evaluate import EvalSection
from distil.recipe.export import ExportSection, ThresholdsSection
from distil.recipe.job import Recipe
from distil.recipe.load import dump_recipe, load_recipe, read_recipe, saved_section, validate_recipe
from distil.recipe.models import LoraSection, ModelSection, StudentSection, TeacherSection
from distil.recipe.reference import recipe_reference, section_model
from distil.recipe.section import PositiveFloat, Probability, Section, with_recipe_seed
from distil.recipe.signal import TeacherSignal, teacher_signal
from distil.recipe.synth import SynthSection
from distil.recipe.train import DistillSection, Divergence, SignalsSection, TrainSection

__all__ = [
    "ApiSection",
    "BenchSection",
    "BudgetSection",
    "CaptureSection",
    "DataSection",
    "DistillSection",
    "Divergence",
    "EvalSection",
    "ExportSection",
    "LoraSection",
    "ModelSection",
    "StudentSection",
    "PositiveFloat",
    "PriceSection",
    "Probability",
    "Recipe",
    "Section",
    "SignalsSection",
    "SynthSection",
    "TeacherSection",
    "TeacherSignal",
    "ThresholdsSection",
    "TrainSection",
    "dump_recipe",
    "load_recipe",
    "read_recipe",
    "recipe_reference",
    "saved_section",
    "section_model",
    "teacher_signal",
    "validate_recipe",
    "with_recipe_seed",
]
