#!/usr/bin/env bash
# Figure 5 for every Table-1 network (`reproduce final_distance --networks all`, code settings) on one GPU,
# inside a deadline, in one command of the device machine:
#
#   benchmarks/gpu_final_distance.sh OUT [DEADLINE_S] [--smoke] [more reproduce options]
#
# The networks run cheapest-first after the default network (the one the paper plots), then the convolution, and
# last very high initial weights (gain 1.4), whose rate fit did not finish in 215 s on an H200 (benchmarks/README.md);
# each is saved as it finishes (its rate trials and its grid as studies of the run-grid layer, rates-ROW/ and
# grid-STEM/, then STEM.network.json), so a deadline that cuts the run short loses only the network in progress. At the deadline the run gets SIGINT (then SIGKILL 30 s later), and the
# script still packs OUT into OUT.tar.gz (the device machine returns at most 8 files). Finish elsewhere with
#   python -m repalign_jax.reproduce final_distance --networks all --out OUT --resume
# which reuses every saved network (OUT/final_distance/grid-*/) and computes the rest. To continue a saved
# run on a device machine, carry runs/reproduce_code/final_distance and pass OUT = runs/reproduce_code.
#
# --smoke: the same code paths at quick sizes on two networks (63 s on a 2-core CPU; tests/test_gpu_final_distance.py).
set -u
out=${1:?usage: gpu_final_distance.sh OUT [DEADLINE_S] [--smoke] [reproduce options]}
shift
deadline=480
if [[ ${1:-} =~ ^[0-9]+$ ]]; then  # DEADLINE_S is optional: `OUT --smoke` keeps the default
    deadline=$1
    shift
fi
networks="default,shallow,narrow (50 units),dropout,skip connections,low initial weights,intermediate initial weights,high initial weights,ReLU,linear,tanh,ELU,swish,convolution,very high initial weights"
extra=()
for a in "$@"; do
    if [ "$a" = "--smoke" ]; then
        networks="default,shallow"
        extra+=(--quick --seeds 2)
    else
        extra+=("$a")
    fi
done
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}  # the device machine's python3 holds JAX; PYTHON picks another (tests: the venv's)
mkdir -p "$out"
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$python" -c "import jax, jaxlib, flax, diffrax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'flax', flax.__version__, 'diffrax', diffrax.__version__, jax.devices())"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
start=$(date +%s)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1 REPALIGN_JAX_CACHE="$out/.jax_cache" \
    timeout -s INT -k 30 "$deadline" "$python" -m repalign_jax.reproduce final_distance --networks "$networks" \
    --out "$out" --resume "${extra[@]}" 2>&1 | tee "$out/log.txt"
rc=${PIPESTATUS[0]}
echo "reproduce exit $rc after $(( $(date +%s) - start )) s" | tee -a "$out/log.txt"
ls "$out"/final_distance/*.network.json 2>/dev/null | sed 's/^/saved: /'
# Not packed: the compile cache, and a grid's snapshot (grid-STEM/grid.snapshot.npz, ~500 MB for the default network's grid:
# over the 16 MiB a returned file may have, it would lose the whole archive; it could not travel back either).
tar czf "$out.tar.gz" --exclude=.jax_cache --exclude='*.snapshot.npz' -C "$(dirname "$out")" "$(basename "$out")"
echo "packed $out.tar.gz ($(du -h "$out.tar.gz" | cut -f1))"
exit "$rc"
