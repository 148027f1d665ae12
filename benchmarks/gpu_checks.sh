#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (CI has none): the machine, the CUDA tests
# (tests/test_cuda.py, and the torch tests whose device list takes CUDA where present),
# then the GPU loop benchmark, the same at 4096 envs without prefetched resets
# (VARIREC_NO_PREFETCH=1, for an A/B on the same machine), the call-by-call
# breakdown and the GPU's timeline (busy, and idle by the loop part it waited for). Logs go to $OUT (or the folder given as the first argument); further
# arguments go to bench_gpu_loop.py.
#
#   bash benchmarks/gpu_checks.sh gpu-logs            # ~3 min on an H200 with 7 repeats (15 now: ~5)
#   bash benchmarks/gpu_checks.sh gpu-logs --quick    # a shorter benchmark
#   git archive 8099b6a varirec | tar -x -C /tmp/base  # then, for a before/after:
#   VARIREC_BASELINE=/tmp/base bash benchmarks/gpu_checks.sh gpu-logs
set -uo pipefail
out=${1:-${OUT:-gpu-logs}}
shift || true
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  "$python" - <<'EOF'
import platform, numpy, torch, pyarrow
print("python", platform.python_version(), "numpy", numpy.__version__, "pyarrow",
      pyarrow.__version__, "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, p.multi_processor_count, "SMs", round(p.total_memory / 2**30), "GiB")
print("CPU:", platform.processor() or platform.machine(), "cores", __import__("os").cpu_count())
EOF
} 2>&1 | tee "$out/machine.txt"

"$python" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_batched_draw.py \
  tests/test_torch_arrays.py tests/test_prefetched_reset.py tests/test_block_pool.py 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}

"$python" benchmarks/bench_gpu_loop.py "$@" 2>&1 | tee "$out/bench_gpu_loop.txt"
bench=${PIPESTATUS[0]}

VARIREC_NO_PREFETCH=1 "$python" benchmarks/bench_gpu_loop.py --envs 4096 --repeats 3 2>&1 |
  tee "$out/bench_gpu_loop_no_prefetch.txt"

# The same loop with another varirec (a source tree: VARIREC_BASELINE=dir, holding
# varirec/), for a before/after on the same machine: the host's cost of a torch call
# differs from machine to machine more than the change being measured.
if [ -n "${VARIREC_BASELINE:-}" ]; then
  echo "varirec from $VARIREC_BASELINE" | tee "$out/bench_gpu_loop_baseline.txt"
  PYTHONPATH="$VARIREC_BASELINE${PYTHONPATH:+:$PYTHONPATH}" "$python" benchmarks/bench_gpu_loop.py \
    --envs 4096 65536 --repeats 3 2>&1 | tee -a "$out/bench_gpu_loop_baseline.txt"
fi

# Where the host time goes, call by call, and what single torch calls cost this host.
"$python" benchmarks/gpu_breakdown.py 2>&1 | tee "$out/gpu_breakdown.txt"
calls=${PIPESTATUS[0]}

"$python" benchmarks/gpu_timeline.py 2>&1 | tee "$out/gpu_timeline.txt"
timeline=${PIPESTATUS[0]}

echo "tests exit $tests, bench exit $bench, breakdown exit $calls, timeline exit $timeline"
exit $((tests || bench || calls || timeline))
