#!/usr/bin/env bash
# The whole GPU check in one go (see ../shared/GPU.md):
#   bash tests/gpu/check.sh OUTDIR
# 1. installs the wheels carried in .whl/ (PyAV, Ray, DALI and their small pure-Python
#    requirements) into /tmp/site, since the GPU machine has no network;
# 2. runs the gpu-marked conformance and DALI tests (NVDEC vs PyAV within the PSNR bound,
#    the colocated DLPack path, DALI log-mel on the GPU vs torchaudio);
# 3. runs the decode benchmark (NVDEC at 340x256 with 1-32 concurrent decoders beside PyAV
#    on every core) and prints its short table last.
# Without a GPU the gpu tests are skipped, the benchmark runs its CPU half and says the GPU
# half was skipped. Everything lands in OUTDIR; the exit status is the tests' status.
set -uo pipefail

OUT=${1:-runs/gpu-check}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# The project's environment when there is one (a dev machine), else the system Python
# (the GPU machine: torch, numpy, pyarrow and pytest preinstalled).
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi

shopt -s nullglob
wheels=(.whl/*.whl)
if (( ${#wheels[@]} )); then
    echo "installing ${#wheels[@]} carried wheels into /tmp/site"
    "$PY" -m pip install --quiet --no-deps --target /tmp/site "${wheels[@]}" \
        || { echo "wheel install failed" >&2; exit 2; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
    "$PY" - <<'PY'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "torchaudio", "av", "ray", "nvidia.dali", "numpy", "yaml", "pyarrow"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:  # a missing module is what this file is for
        print(name, "missing:", e)
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

tests=(tests/test_dali.py tests/test_audio_dali.py)
[[ -f tests/test_conformance.py ]] && tests=(tests/test_conformance.py "${tests[@]}")
echo "== pytest -m gpu ${tests[*]}"
"$PY" -m pytest -m gpu -p no:cacheprovider -rA -s "${tests[@]}" \
    --junitxml="$OUT/pytest-gpu.xml" 2>&1 | tee "$OUT/pytest-gpu.txt"
status=${PIPESTATUS[0]}
# 5: nothing collected/selected counts as success (no gpu tests here is not a failure).
[[ $status == 5 ]] && status=0
echo "pytest -m gpu: exit $status (log: $OUT/pytest-gpu.txt)"

echo "== decode benchmark (full numbers: $OUT/bench_gpu.json)"
"$PY" -m workers.decode.bench_gpu --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}

# No output after the benchmark's table: it is the last thing a reader sees.
(( status == 0 && bench == 0 ))
