"""distil: knowledge distillation of language models.

A teacher's softened distributions train a small student. The public entry points are
the CLI (`distil --help`), the recipe (`distil.recipe.load_recipe`), the losses
(`distil.losses`) and the stages (`distil.train.train`, `distil.evaluate.evaluate`).
"""

__version__ = "0.1.0"
