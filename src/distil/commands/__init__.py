"""`distil` commands kept apart from the recipe commands in distil.cli, which registers them:
those with settings models of their own (`serve`, `audit`: their options are built from those
models by `options`, so each option, its help and its default are written once), those over
a run folder rather than a recipe (`export`, `bench`, `report`: `run_folder`) and `push`
(a run's folder to the Hugging Face Hub).
"""
