#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_requirements.txt into .whl/ (CPython 3.12, x86-64
# Linux) for a GPU machine without network; run from the repository root, on a machine with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl -r benchmarks/gpu_requirements.txt
ls .whl
