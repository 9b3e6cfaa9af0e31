#!/bin/bash
# One prepared device check for a GPU machine that has torch but not this project's other packages (no network):
#   1. the CUDA tests (`pytest -m cuda`, as `make gpu-check`);
#   2. `make reproduce` on the host CPU (LEARNTHY_DEVICE=cpu) for the chapters in $REPRO: a CPU other than the one
#      that stored the outputs, claims compared by tolerance;
#   3. every chapter in $QUICK at quick scale on CUDA (no glue check there: myst_nb is not installed);
#   4. the chapters in $BOOKCUDA at book scale on CUDA, claims compared with the stored CPU run.
# Logs go to $OUT. Wheels of the missing packages (POT, opacus, dp-accounting, dm-tree, the Jupyter kernel stack:
# see benchmarks/device_runs.md) travel in .whl/ (git-ignored) and are installed into /tmp/site first.
# Run from the repository root: `bash tools/device_check.sh`; NOGPU=1 runs only stage 2; BUDGET (s) bounds it all.
set -u
PY=${PY:-python3}
T0=$(date +%s); DEADLINE=$((T0 + ${BUDGET:-500}))
left() { echo $(( DEADLINE - $(date +%s) )); }
if [ -z "${SKIP_INSTALL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ date; nproc; grep -m1 "model name" /proc/cpuinfo; grep -m1 flags /proc/cpuinfo | grep -o "avx512f\|avx2" | sort -u | tr '\n' ' '; echo
  nvidia-smi -L; $PY -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), numpy.__version__, scipy.__version__)"
  $PY -c "from learnthy_nb.core import machine_info; print(machine_info())"; } > $OUT/machine.log 2>&1
REPRO=${REPRO:-"00_core 10_diffusion 11_diffusion_beyond 20_transformer 21_transformer_beyond 23_transformer_fixed 30_mfld 36_parity_beyond 40_dp 41_diff2 42_audit 45_scalablefl 50_anisotropic 51_ood 91_besov 92_sde 93_kernels 94_wgf_lsi 95_lower_bounds"}
QUICK=${QUICK:-"00_core 10_diffusion 11_diffusion_beyond 12_diffusion_structure 20_transformer 21_transformer_beyond 22_transformer_seq 23_transformer_fixed 30_mfld 35_parity 36_parity_beyond 37_parity_phase 40_dp 41_diff2 42_audit 45_scalablefl 50_anisotropic 51_ood 91_besov 92_sde 93_kernels 94_wgf_lsi 95_lower_bounds"}
BOOKCUDA=${BOOKCUDA:-"12_diffusion_structure 22_transformer_seq 35_parity 37_parity_phase"}
[ -n "${NOGPU:-}" ] || ( timeout $(left) $PY -m pytest -m cuda -p no:cacheprovider -rs -q tests > $OUT/gpu_check.log 2>&1; echo "rc=$?" >> $OUT/gpu_check.log ) &
( LEARNTHY_DEVICE=cpu OMP_NUM_THREADS=1 timeout $(( $(left) - 15 )) $PY tools/chapters.py run --out /tmp/repro --jobs ${RJOBS:-10} --wall ${RWALL:-430} $REPRO > $OUT/repro.log 2>&1
  echo "run rc=$?" >> $OUT/repro.log; $PY tools/chapters.py compare /tmp/repro $REPRO >> $OUT/repro.log 2>&1; echo "compare rc=$?" >> $OUT/repro.log ) &
[ -n "${NOGPU:-}" ] || ( OMP_NUM_THREADS=1 timeout $(( $(left) - 15 )) $PY tools/chapters.py run --scale quick --out /tmp/quick_cuda --jobs ${QJOBS:-3} --wall 300 $QUICK > $OUT/quick_cuda.log 2>&1
  echo "run rc=$?" >> $OUT/quick_cuda.log; $PY tools/chapters.py gluecheck /tmp/quick_cuda $QUICK >> $OUT/quick_cuda.log 2>&1
  OMP_NUM_THREADS=1 timeout $(( $(left) - 15 )) $PY tools/chapters.py run --out /tmp/book_cuda --jobs 4 --wall $(( $(left) - 20 )) $BOOKCUDA > $OUT/book_cuda.log 2>&1
  echo "run rc=$?" >> $OUT/book_cuda.log; $PY tools/chapters.py compare /tmp/book_cuda $BOOKCUDA >> $OUT/book_cuda.log 2>&1 ) &
wait
cd /tmp && tar czf $OUT/nbs.tgz --exclude='*.png' repro quick_cuda book_cuda 2>/dev/null
echo "device script done in $(( $(date +%s) - T0 )) s"; ls -la $OUT
