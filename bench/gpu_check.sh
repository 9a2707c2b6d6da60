#!/usr/bin/env bash
# One GPU check of nanonorm, about 8 minutes on an H100/H200 (docs/gpu.md, "One check script").
# NEVER YET RUN ON A GPU: only its --dry mode has run, on machines without one.
#
#   bash bench/gpu_check.sh          on a machine with an NVIDIA GPU (no network needed)
#   bash bench/gpu_check.sh --dry    anywhere (or GPU_CHECK_DRY=1): the CUDA simulator, tiny
#                                    sizes, torch on the CPU; checks this script, not a GPU
#
# Steps, each with its own time limit, none started once GPU_CHECK_BUDGET seconds (470) are
# spent: env (versions; the CUDA kernels compile and run), tests (the GPU tests), kernels
# (every CUDA kernel at GPT-2 sizes vs float64), sync (hidden host syncs), racecheck and
# memcheck (compute-sanitizer), gpt (GPT-2 small B=8 T=1024 vs torch eager fp32 / TF32 /
# bf16 autocast), bench (the grid's GPU rows). GPU_CHECK_STEPS="gpt bench" runs only those.
# Writes into $OUT (default ./out/gpu_check): summary.txt (its last line says what failed),
# summary.json, steps.log (every step's output), bench.json, bench.png, gpt.json.
# Exit status 1 when a step failed or ran out of time, 2 when there is no GPU without --dry.
# Wheels in .whl/ (packages the machine lacks) are installed first into a scratch folder.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
DRY=${GPU_CHECK_DRY:-0}
[ "${1:-}" = --dry ] && DRY=1
OUT=${OUT:-$REPO/out/gpu_check}
BUDGET=${GPU_CHECK_BUDGET:-470}
STEPS=${GPU_CHECK_STEPS:-}
export PY=${PYTHON:-python3}
T0=$(date +%s)
W=$(mktemp -d)                       # scratch: installed wheels, step logs
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT" && rm -f "$OUT"/{summary.txt,summary.json,steps.log,bench.json,bench.png,gpt.json}

export PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci MPLBACKEND=Agg NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}   # nanonorm from this checkout, no install
if [ "$DRY" = 1 ]; then
  export GPU_CHECK_DRY=1 NUMBA_ENABLE_CUDASIM=1
  MODE="DRY RUN, no GPU: numba-cuda's simulator, nothing ran on a GPU"
else
  if ! command -v nvidia-smi > /dev/null; then
    echo "gpu_check: no nvidia-smi, so no GPU here: run 'bash bench/gpu_check.sh --dry'" >&2
    exit 2
  fi
  export GPU_CHECK_DRY=0 NUMBA_ENABLE_CUDASIM=0
  # numba-cuda compiles with NVVM: the system toolkit's, where the wheels bring none
  [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda/nvvm ] && export CUDA_HOME=/usr/local/cuda
  MODE="GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
fi

# a step's one-line verdict: a probe's RESULT line, pytest's last line, or compute-sanitizer's
# summary (printed after the probe's RESULT)
VERDICT='^RESULT |^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s'
VERDICT+='|^=+ [A-Z]+ SUMMARY:'

elapsed() { echo $(( $(date +%s) - T0 )); }

record() {  # record NAME STATUS RC SECONDS NOTE
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$W/steps.tsv"
  printf '[%4ss] %-9s %-8s %s\n' "$(elapsed)" "$1" "$2" "$5"
}

step() {  # step NAME LIMIT_S CMD...: CMD under its limit (cut to the budget left), logged
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - $(elapsed) ))
  if [ -n "$STEPS" ] && [[ " $STEPS " != *" $name "* ]]; then
    record "$name" skipped - 0 "not in GPU_CHECK_STEPS"; return
  fi
  if (( left < 15 )); then record "$name" skipped - 0 "budget of ${BUDGET}s spent"; return; fi
  (( limit > left )) && limit=$left
  local t0 log=$W/$name.log status=ok rc note
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  (( rc != 0 )) && status=failed
  (( rc == 124 || rc == 137 )) && status=timeout
  note=$(grep -aE "$VERDICT" "$log" | tail -1 | sed -E 's/^RESULT //; s/^=+ //; s/ =+$//' \
         | cut -c1-300)
  [ "$status" = timeout ] && note="killed after ${limit}s${note:+; last: $note}"
  { echo "=== $name: $status (rc $rc, $(( $(date +%s) - t0 ))s, limit ${limit}s)"; cat "$log"
    echo; } >> "$OUT/steps.log"
  record "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "${note:-see steps.log}"
  if [ "$status" != ok ]; then
    { echo "--- $name ($status), the end of its log:"; tail -n 20 "$log"; } >> "$W/failures"
  fi
}

skip() { record "$1" skipped - 0 "$2"; }   # skip NAME WHY

PROBE=("$PY" -m nanonorm.bench.gpu_probe)

echo "gpu_check: $MODE; budget ${BUDGET}s; results in $OUT"

# 0. wheels carried to a machine without network (pure-Python packages its image lacks)
if [ "$DRY" != 1 ] && compgen -G ".whl/*.whl" > /dev/null; then
  step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$W/site" .whl/*.whl
  export PYTHONPATH=$W/site:$PYTHONPATH
fi

# 1. versions, nvidia-smi, `nanonorm info`; fails unless a CUDA kernel compiled and ran
step env 60 bash -c '
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    2>/dev/null || echo "nvidia-smi: none (no GPU)"
  echo "compute-sanitizer: $(command -v compute-sanitizer || echo none)"
  echo "CUDA_HOME=${CUDA_HOME:-unset}"
  exec "$PY" -m nanonorm.bench.gpu_probe env'

# 2. the GPU tests: CuPy end to end (must show no skips), the kernel property tests on CuPy
#    arrays (with their real-shape test_gpu_* cases), the CUDA kernels' edge cases, the
#    bench's GPU rows; dry: the end-to-end bodies on NumPy with the Numba kernels
#    (NANONORM_E2E_LIB=numpy: seconds; on the simulator they take many minutes)
TESTS=(tests/test_cupy_end_to_end.py)
[ "$DRY" = 1 ] || TESTS+=(tests/test_kernels_cuda.py tests/test_kernels_cuda_attention.py
                          tests/test_edge_numerics.py tests/test_edge_dtype.py
                          tests/test_bench.py::test_gpu_rows_and_study_table_through_the_main_bench)
step tests 150 env NANONORM_E2E_LIB=$([ "$DRY" = 1 ] && echo numpy || echo cupy) \
  "$PY" -m pytest -p no:cacheprovider -q -ra --durations=10 -k "cuda or device or gpu or study" \
  "${TESTS[@]}"

# 3-4. the probes (bench/gpu_probe.py): kernels at GPT-2 sizes, hidden host syncs
step kernels 120 "${PROBE[@]}" kernels
step sync 60 "${PROBE[@]}" sync

# 5-6. races and bad accesses in the kernels, which neither the simulator nor the tests see
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
            /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
for tool in racecheck memcheck; do
  if [ "$DRY" = 1 ]; then skip $tool "dry run: compute-sanitizer needs a GPU"
  elif [ -z "$SANITIZER" ]; then skip $tool "compute-sanitizer not installed"
  else step $tool 90 "$SANITIZER" --tool $tool --error-exitcode 9 --print-limit 20 \
         "${PROBE[@]}" sanitize
  fi
done

# 7-8. the timings last: GPT-2 small against torch, then the bench grid's GPU rows
step gpt 150 "${PROBE[@]}" gpt "$OUT"
step bench 180 "${PROBE[@]}" bench "$OUT"

# summary: one table, the end of each failed step's log, and a last line nobody can miss
awk -F'\t' -v mode="$MODE" -v took="$(elapsed)" -v budget="$BUDGET" -v last="$W/last" '
  BEGIN { printf "nanonorm GPU check (%s), %ss of a %ss budget\n", mode, took, budget
          printf "%-10s %-8s %-4s %6s  %s\n", "step", "status", "rc", "secs", "result" }
  { printf "%-10s %-8s %-4s %6s  %s\n", $1, $2, $3, $4, $5
    if ($2 == "ok") ok++
    else if ($2 == "skipped") { skipped++; sk = sk (sk ? ", " : "") $1 ": " $5 }
    else { failed++; fl = fl (fl ? ", " : "") $1 ($2 == "timeout" ? ": timeout" : "") } }
  END { if (!failed) failed = 0
        printf "GPU CHECK%s: %d steps ok, %d failed%s, %d skipped%s\n", \
          (mode ~ /^DRY/ ? " (DRY RUN, no GPU)" : ""), ok, failed, (fl ? " (" fl ")" : ""), \
          skipped, (sk ? " (" sk ")" : "") > last }
' "$W/steps.tsv" > "$OUT/summary.txt"
[ -f "$W/failures" ] && cat "$W/failures" >> "$OUT/summary.txt"
MODE=$MODE BUDGET=$BUDGET TOOK=$(elapsed) "$PY" - "$W/steps.tsv" "$OUT/summary.json" <<'EOF' \
  || echo "(summary.json not written: no working Python)" >> "$OUT/summary.txt"
import json, os, subprocess, sys
keys = ("name", "status", "rc", "seconds", "result")
steps = [dict(zip(keys, line.rstrip("\n").split("\t"))) for line in open(sys.argv[1])]
for s in steps:
    s["rc"], s["seconds"] = (int(s[k]) if s[k].isdigit() else None for k in ("rc", "seconds"))
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
json.dump({"mode": os.environ["MODE"], "commit": commit.strip() or None,
           "budget_s": int(os.environ["BUDGET"]), "took_s": int(os.environ["TOOK"]),
           "steps": steps, "failed": [s["name"] for s in steps
                                      if s["status"] not in ("ok", "skipped")]},
          open(sys.argv[2], "w"), indent=2)
EOF
cat "$W/last" >> "$OUT/summary.txt"
echo; cat "$OUT/summary.txt"
grep -q "^GPU CHECK.* 0 failed" "$OUT/summary.txt"
