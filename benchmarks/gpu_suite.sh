#!/usr/bin/env bash
# Every GPU benchmark row the project owes, in one run of at most 9 minutes on one GPU.
#
#   bash benchmarks/gpu_suite.sh [--out-dir DIR] [--parts LIST]
#                                                     # on the GPU machine: tables to DIR (default benchmarks/results);
#                                                     # --parts: only these parts (comma-separated names below)
#   bash benchmarks/gpu_suite.sh --smoke [--out-dir DIR]
#                                                     # every part end to end on CPU at tiny sizes, into a temporary
#                                                     # directory (never benchmarks/results); exit 1 if any part fails
#
# Parts (each under its own `timeout`, the timeouts sum to 540 s, so one slow part cannot eat the budget):
#   evaluate  bench_evaluate.py --anchor --precisions fp32,tf32,bf16  (121 points, 784-1024³-10, 60,000 inputs)
#   cushions  bench_cushions.py --vgg11                               (VGG-11, 32×32 inputs; see CUSHIONS_N)
#   curves    bench_curves.py                                          (curve-training overhead, BN recompute)
#   bounds    bench_bounds.py                                          (certified max loss vs sampled max)
#   paths     bench_paths.py                                           (Theorem 1/2/3 paths, structure-aware)
#   vgg_plan  bench_vgg_plan.py --width-div 2                          (the VGG-11 plan at half width)
# Each writes its table to OUT/<script>_gpu.md (smoke: _smoke.md) under a heading with the command and the machine;
# the summary (ran / failed / timed out, seconds) is printed and written to OUT/gpu_suite_summary.md.
# Works from the repository root with the package installed or not (the repository is put on PYTHONPATH).
# Testing hook: BENCH_SUITE_FAIL=<part> hands that part an invalid flag, so the suite must report it failed.
set -u

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"

SMOKE=0
OUT=""
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; shift ;;
        --out-dir)
            if [ $# -lt 2 ] || [ -z "$2" ]; then echo "gpu_suite.sh: --out-dir needs a directory" >&2; exit 2; fi
            OUT="$2"; shift 2 ;;
        --parts)
            if [ $# -lt 2 ] || [ -z "$2" ]; then echo "gpu_suite.sh: --parts needs a comma-separated list" >&2; exit 2; fi
            ONLY="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument '$1' (allowed: --smoke, --out-dir DIR, --parts LIST, --help)" >&2; exit 2 ;;
    esac
done

KNOWN="evaluate,cushions,curves,bounds,paths,vgg_plan"
if [ -n "$ONLY" ]; then
    for p in ${ONLY//,/ }; do
        case ",$KNOWN," in *",$p,"*) ;; *) echo "gpu_suite.sh: unknown part '$p' in --parts (known: $KNOWN)" >&2; exit 2 ;; esac
    done
fi

# JAX's persistent compilation cache: a rerun (or the smoke run after a first one) skips most compilation.
CACHE="${BENCH_JAX_CACHE-${TMPDIR:-/tmp}/stability-bench-jax-cache-$(id -u)}"
if [ -n "$CACHE" ]; then
    export JAX_COMPILATION_CACHE_DIR="$CACHE"
    export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0.2}"  # a caller's value wins
    export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
fi

if [ "$SMOKE" = 1 ]; then
    export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
    if [ -z "$OUT" ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_smoke.XXXXXX")"; fi
    SUFFIX=smoke
else
    OUT="${OUT:-$REPO/benchmarks/results}"
    SUFFIX=gpu
fi
mkdir -p "$OUT" || { echo "gpu_suite.sh: cannot create the output directory '$OUT'" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
if [ "$SMOKE" = 1 ] && [ "$OUT" = "$REPO/benchmarks/results" ]; then
    echo "gpu_suite.sh: --smoke never writes into benchmarks/results; choose another --out-dir" >&2
    exit 2
fi
cd "$REPO" || exit 2

CUSHIONS_N="${CUSHIONS_N:-256}"   # VGG-11 samples of the cushions row: 4 measurements (first + 3 pairs) must fit 120 s;
                                   # bench_vgg_plan_cpu.md projects ~0.47 TFLOP per sample (raise it if the row ends early)

# name | timeout (s) | script | arguments (GPU) | arguments (smoke)
PARTS=(
  "evaluate|100|bench_evaluate.py|--anchor --precisions fp32,tf32,bf16|--anchor --n 128 --width 16 --batches 64,128 --pairs 1 --precisions fp32"
  "cushions|120|bench_cushions.py|--vgg11 --n $CUSHIONS_N --pairs 3 --memory-gb 32|--n 4 --draws 1 --max-iter 3 --pairs 1 --baseline-batch 4 --train-steps 20"
  "curves|70|bench_curves.py||--n 256 --width 16 --depth 1 --pairs 7 --bn-pairs 1 --bn-train 256 --bn-eval 128 --bn-width 16 --bn-depth 1 --points 3"
  "bounds|70|bench_bounds.py||--steps 10 --curve-steps 10 --samples 64 --repeats 1 --budget 8 --points 5"
  "paths|100|bench_paths.py|--depths 4,6|--smoke"
  "vgg_plan|80|bench_vgg_plan.py|--width-div 2 --n 64|--smoke"
)

SUMMARY="$OUT/gpu_suite_summary.md"
machine="$("$PY" -c 'from stability.app.report import machine_description as m; print(m())' 2>/dev/null || echo unknown)"
{
    echo "# gpu_suite.sh $([ "$SMOKE" = 1 ] && echo --smoke) — $(date '+%Y-%m-%d %H:%M')"
    echo
    echo "Machine: $machine. Tables in $OUT."
    echo
    echo "| part | command | result | seconds (timeout) | table |"
    echo "|---|---|---|---|---|"
} > "$SUMMARY"

failed=0
t_all=$SECONDS
for entry in "${PARTS[@]}"; do
    IFS='|' read -r name limit script gpu_args smoke_args <<< "$entry"
    if [ -n "$ONLY" ]; then case ",$ONLY," in *",$name,"*) ;; *) continue ;; esac; fi
    args="$gpu_args"
    [ "$SMOKE" = 1 ] && args="$smoke_args"
    [ "${BENCH_SUITE_FAIL:-}" = "$name" ] && args="$args --no-such-flag"
    table="$OUT/${script%.py}_${SUFFIX}.md"
    rm -f "$table"
    cmd="$PY benchmarks/$script $args --out $table"
    echo "== $name: $cmd (timeout ${limit} s)"
    t0=$SECONDS
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$limit" $PY "benchmarks/$script" $args --out "$table" > "$OUT/$name.log" 2>&1
    rc=$?
    dt=$((SECONDS - t0))
    if [ $rc -eq 0 ] && [ -s "$table" ]; then
        result="ran"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        result="TIMED OUT"; failed=1
    elif [ $rc -eq 0 ]; then
        result="FAILED (exit 0 but no table)"; failed=1
    else
        result="FAILED (exit $rc)"; failed=1
    fi
    echo "   $result after ${dt} s; log $OUT/$name.log"
    [ "$result" = ran ] || tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
    echo "| $name | \`$cmd\` | $result | $dt ($limit) | $([ -s "$table" ] && basename "$table" || echo —) |" >> "$SUMMARY"
done
echo >> "$SUMMARY"
echo "Total: $((SECONDS - t_all)) s." >> "$SUMMARY"
echo
cat "$SUMMARY"
exit $failed
