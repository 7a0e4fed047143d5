#!/usr/bin/env bash
# Issue 19 item 5: the paper-scale checks that need a GPU, in one script (< 8 min on an H100/H200: the three
# steps are capped at 200 + 150 + 120 s; SmolLM2's GGUF conversion alone is ~70 s of CPU).
#   1. extraction bench on CUDA in bf16: SmolLM2-135M (registry model, real traces) and a random-initialised
#      model with Llama-8B's shapes (hidden 4096, 32 layers): tokens/s and the fraction of the card's dense
#      bf16 FLOP limit (~2 x params FLOPs/token; H100 SXM 989 TFLOP/s, override with PEAK_TFLOPS);
#   2. the probe engine on CUDA at seed 002's scale: one layer (516k tokens x 4096, float32) x 7 lag targets
#      x the 4-value C grid in one batched L-BFGS (the fraction that fits: FRACTION, default 1.0).
# Without CUDA it says so and runs the same steps on the CPU at tiny sizes (a smoke test of the script).
# Usage: bash scripts/device_check.sh   (from any directory; uses .venv when present)
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
[ -f .venv/bin/activate ] && source .venv/bin/activate
export TOKENIZERS_PARALLELISM=false
PEAK_TFLOPS="${PEAK_TFLOPS:-989}"
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda; DTYPE=bfloat16; FRACTION="${FRACTION:-1.0}"
  python -c "import torch; print('device:', torch.cuda.get_device_name(0), f'{torch.cuda.get_device_properties(0).total_memory/2**30:.0f} GiB')"
  SMOL_ARGS=(--traces 64 --repeats 3); LLAMA_ARGS=(--shape 8b --traces 48 --repeats 3); LIMITS=(200 150 120)
else
  DEVICE=cpu; DTYPE=float32; FRACTION="${FRACTION:-0.002}"
  echo "device: NO CUDA -- CPU fallback at tiny sizes (a smoke test; the numbers say nothing about a GPU)"
  SMOL_ARGS=(--traces 2 --repeats 1); LLAMA_ARGS=(--shape tiny --traces 4 --repeats 1)
  LIMITS=(400 400 200)  # a busy 2-core CPU: the extraction bench's naive path alone takes minutes
fi
status=0
step() {  # step NAME SECONDS CMD...: run with a time limit, report its wall time and exit status
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "=== $name"
  timeout "$limit" "$@"; local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0))s"
  [ $rc -eq 0 ] || status=1
}
step "extraction smollm2-135m ($DEVICE, $DTYPE)" "${LIMITS[0]}" \
  python -m ta_platform.cli.main bench extraction --model smollm2-135m --device "$DEVICE" --dtype "$DTYPE" \
    --peak-tflops "$PEAK_TFLOPS" "${SMOL_ARGS[@]}" --json
step "extraction random Llama-8B shapes ($DEVICE, $DTYPE)" "${LIMITS[1]}" \
  python -m ta_platform.cli.main bench extraction --arch llama --device "$DEVICE" --dtype "$DTYPE" \
    --peak-tflops "$PEAK_TFLOPS" "${LLAMA_ARGS[@]}" --json
step "probe engine, seed-002 scale x $FRACTION ($DEVICE)" "${LIMITS[2]}" python - "$DEVICE" "$FRACTION" <<'PY'
"""One layer of seed 002 (516k tokens x 4096) x 7 lag targets x 4 C values, batched L-BFGS on the device."""
import json, sys, time
import numpy as np
import torch
from ta_platform.probing.engine_logistic import fit_logistic_heads
from ta_platform.probing.metrics import auroc

device, fraction = sys.argv[1], float(sys.argv[2])
rows, dims, lags, rank = max(2000, int(516_000 * fraction)), 4096 if device == "cuda" else 256, 7, 64
rng = np.random.default_rng(0)
factors = rng.standard_normal((rows, rank), dtype=np.float32)
X = factors @ (rng.standard_normal((rank, dims), dtype=np.float32) / np.sqrt(rank))
X += 0.05 * rng.standard_normal((rows, dims), dtype=np.float32)
planted = factors @ rng.standard_normal((rank, lags), dtype=np.float32)
y = (planted + rng.logistic(size=planted.shape) > 1.0).astype(int)
train, test = np.arange(rows) < int(0.8 * rows), np.arange(rows) >= int(0.8 * rows)
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
start = time.perf_counter()
heads = fit_logistic_heads(X, y[train], rows=np.flatnonzero(train), c_grid=(1e-3, 1e-2, 1e-1, 1.0),
                           device=device, memory_budget_bytes=(60 if device == "cuda" else 1) * 2**30)
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
scores = heads.decision(X[test])  # [rows, targets, C]
recovered = [auroc(y[test, t], scores[:, t, -1]) for t in range(lags)]
truth = [auroc(y[test, t], planted[test, t]) for t in range(lags)]
out = {"device": device, "rows": rows, "dims": dims, "heads": lags * 4, "fit_seconds": round(seconds, 2),
       "gpu_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
       "planted_auroc": round(float(np.mean(truth)), 4), "recovered_auroc": round(float(np.mean(recovered)), 4)}
print(json.dumps(out))
PY
echo "device_check: $([ $status -eq 0 ] && echo all steps passed || echo SOME STEPS FAILED)"
exit $status
