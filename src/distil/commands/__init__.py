"""`distil` commands with settings models of their own (`serve`, `audit`), kept apart from the
recipe commands in distil.cli, which registers them. Their options are built from those
models (`options`), so each option, its help and its default are written once.
"""
