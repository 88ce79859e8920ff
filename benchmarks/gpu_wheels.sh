#!/usr/bin/env bash
# Adds to .whl/small (see ../shared/gpu/prepare.sh, which fetches onnxruntime-gpu and
# onnx-graphsurgeon) the pure-Python and cp312 wheels that lrnconv's CUDA checks need and
# the GPU machine's image may lack. Run here, from the checkout root, after prepare.sh.
set -eu
mkdir -p .whl/small
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d .whl/small onnx protobuf numpy ml_dtypes typing_extensions click pytest iniconfig pluggy packaging
du -sh .whl/small
