#!/usr/bin/env bash
# The CUDA half of lrnconv's checks, as one script for the lent GPU machine.
#
# Before: here, `bash ../shared/gpu/prepare.sh` (downloads onnxruntime-gpu and
# onnx-graphsurgeon wheels, splits the big one into .whl/part-K), then
# `bash benchmarks/gpu_wheels.sh` (onnx, numpy, click, pytest ... into .whl/small, 25 MB). On the device, one call
# per part, back to back (carry [".whl/part-K"]):  cat .whl/part-K/chunk-* >> ~/ortgpu.whl
# Last call (carry [".whl/small"]):
#     bash benchmarks/gpu_check.sh ~/ortgpu.whl onnxruntime_gpu-<version>-<tags>.whl
# Everything it prints goes to $OUT (the device tool brings it back) and to stdout;
# commit it under benchmarks/results/cuda/ with the card named.
set -u
wheel_blob=${1:?reassembled wheel (e.g. ~/ortgpu.whl)}
wheel_name=${2:?the original file name of the wheel (pip needs it)}
out=${OUT:-benchmarks/results/cuda}
mkdir -p "$out"
site=$HOME/site
cp "$wheel_blob" "$HOME/$wheel_name"
python3 -m pip install -q --no-index --no-deps --target "$site" "$HOME/$wheel_name" .whl/small/*.whl
# lrnconv itself, with passes/ and models/ mapped into the package as setup.cfg does
mkdir -p "$site/lrnconv"
cp -r lrnconv/. "$site/lrnconv/"
cp -r passes "$site/lrnconv/passes"
cp -r models "$site/lrnconv/models"
export PYTHONPATH=$site

python3 -c "import onnx, onnxruntime, onnx_graphsurgeon, click, pytest, numpy" \
  || { echo "a module is missing on the GPU machine: see benchmarks/gpu_wheels.sh"; exit 2; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime as o, numpy, onnx; print('onnxruntime', o.__version__, o.get_available_providers()); print('onnx', onnx.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$out/gpu.txt"

python3 -m pytest -m cuda -q -rs -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.txt"

python3 -m lrnconv zoo -o "$out/zoo" --providers cpu,cuda --samples 32 2>&1 | tail -n 3 | tee "$out/zoo_cli.txt"
cp "$out/zoo/report.md" "$out/zoo_report.md" && rm -rf "$out/zoo"
python3 benchmarks/cuda_verify.py 2>&1 | tee "$out/cuda_verify.md"
python3 benchmarks/bench_decompose.py --provider cuda --batches 1,32 --runs 1:30,32:10 --wait-quiet 0 --out "$out/bench_decompose_cuda.md" 2>&1 | tail -n 40
