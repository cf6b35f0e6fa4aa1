#!/usr/bin/env bash
# What a lent GPU machine runs: the CUDA tests and the GPU benchmarks, each part under its own time limit, logs and
# JSON written to $OUT (default bench/results). From the repository root:
#
#   KELP_BENCH_COMMIT=<this commit> bash bench/gpu_session.sh tests attention-kernels      # then
#   KELP_BENCH_COMMIT=<this commit> bash bench/gpu_session.sh memory attention-e2e memory-generations
#   bash bench/gpu_session.sh train       # alone in its call, carrying .device/site.tar.gz and .device/minilm.tar.xz
#
# The lent machines have PyTorch but not every Kelp dependency, and cannot download: prepare them here first with
# `bash bench/gpu_session.sh prepare` (diffusers, bitsandbytes' CUDA 13 library and imageio-ffmpeg's Python code
# packed into .device/site.tar.gz, and the benchmark prompts encoded by MiniLM into .device/text-embeddings.safetensors),
# then carry `.device` with the call.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
embeddings=.device/text-embeddings.safetensors
export PYTHONUNBUFFERED=1  # and KELP_BENCH_COMMIT, set by the caller: the machine's .git can be older than the code
python=python3

prepare() {
  local site=.venv/lib/python3.11/site-packages staging
  staging=$(mktemp -d)
  mkdir -p .device "$staging/site"
  cp -r "$site"/diffusers "$site"/diffusers-*.dist-info "$site"/bitsandbytes "$site"/bitsandbytes-*.dist-info \
    "$site"/imageio_ffmpeg "$staging/site/"
  find "$staging/site" -name __pycache__ -type d -prune -exec rm -rf {} +
  # One CUDA library (the device's PyTorch is built for CUDA 13) and no bundled ffmpeg: the call carries 64 MiB at most.
  find "$staging/site/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name '*cuda13*' ! -name '*cpu*' -delete
  rm -f "$staging"/site/imageio_ffmpeg/binaries/ffmpeg-*
  tar czf .device/site.tar.gz -C "$staging" site
  rm -rf "$staging"
  .venv/bin/python -m bench.recorded_text --out "$embeddings"
  .venv/bin/python -m training.pack_text_encoder --out .device/minilm.tar.xz  # for `train`: toy-world words only
  du -sh .device
}

unpack() {
  if [ -f .device/site.tar.gz ]; then
    tar xzf .device/site.tar.gz -C /tmp && export PYTHONPATH=/tmp/site:$PWD
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  $python -c "import torch, diffusers, bitsandbytes; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'bitsandbytes', bitsandbytes.__version__, torch.cuda.get_device_name())"
}

part() {  # name, seconds, command...
  local name=$1 seconds=$2
  shift 2
  echo "=== $name (at most ${seconds}s) $(date -u +%T)"
  timeout "$seconds" "$@" 2>&1 | tee "$out/gpu-$name.log"
  echo "=== $name exit ${PIPESTATUS[0]} $(date -u +%T)"
}

for what in "$@"; do
  case $what in
    prepare) prepare; exit ;;
  esac
done
unpack
for what in "$@"; do
  case $what in
    tests)  # the gpu-marked tests (the store and studio tests need packages the machine lacks)
      part tests 100 $python -m pytest -q -p no:cacheprovider -m gpu tests/core/attention tests/core/quant \
        tests/core/test_memory.py ;;
    attention-kernels)
      part attention-kernels 240 $python -m bench.attention --device cuda --skip-end-to-end \
        --lengths 32768,75000,16384,4096 --out "$out/attention-cuda.json" ;;
    memory)  # weights (150 s: Wan-14B in four modes), fidelity, tiled VAE decode
      for section in weights:150 fidelity:60 vae:60; do
        part "memory-${section%:*}" "${section#*:}" $python -m bench.memory_cuda --sections "${section%:*}" \
          --text-embeddings "$embeddings" --out "$out/memory-cuda.json"
      done ;;
    memory-generations)
      part memory-generations 60 $python -m bench.memory_cuda --sections generations --text-embeddings "$embeddings" \
        --out "$out/memory-cuda.json" ;;
    attention-e2e)
      part attention-e2e 200 $python -m bench.attention --device cuda --skip-kernels --text-embeddings "$embeddings" \
        --out "$out/attention-cuda-e2e.json" ;;
    train)  # kelp-small continued for KELP_TRAIN_SECONDS (default 420), shipped as float16, back in 15 MB parts
      run=runs/small-gpu-continue recipe=training/recipes/small-gpu-continue.toml
      rm -rf "$run" runs/minilm runs/minilm-toy-world runs/shipped && mkdir -p runs
      tar xJf .device/minilm.tar.xz -C runs && mv runs/minilm runs/minilm-toy-world
      part train "${KELP_TRAIN_SECONDS:-420}" $python -m training.train --recipe "$recipe"
      part export 90 $python -m training.train --recipe "$recipe" --export-only --export-to "$run/export"
      part ship 60 $python -m training.ship --model "$run/export" --assets-dir runs/shipped --name kelp-small-gpu
      cp "$run/metrics.csv" "$out/gpu-train-metrics.csv"
      # Here: cat kelp-small-gpu.tar.part-* | tar x -C <folder>, then the harness on <folder>/kelp-small-gpu.
      tar cf - -C runs/shipped kelp-small-gpu | split -b 15M - "$out/kelp-small-gpu.tar.part-" ;;
    *) echo "unknown part $what"; exit 2 ;;
  esac
done
