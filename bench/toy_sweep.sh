#!/usr/bin/env bash
# Measures the choices behind cterp's defaults on the default toy (512 features in 128 dims,
# ~5 active): each line trains with `cterp train --toy` and prints held-out MMCS, reverse MMCS,
# explained variance and the fraction of latents that never fire. Not a test: ~15 minutes on 2
# cores. Usage: bench/toy_sweep.sh [build/cterp] [steps]
set -euo pipefail
bin=${1:-build/cterp}
S=${2:-1000}
# "plain": the settings of a plain PyTorch TopK SAE (constant Adam 1e-3, no warm-up, no revival,
# b_dec 0, no decoder-norm rescaling), d_sae 1024, k 8, batch 4096
plain="--arch topk --d-sae 1024 --k 8 --batch 4096 --lr 1e-3 --lr-scheduler constant --lr-warm-up-steps 0 --use-auxk false --use-ghost-grads false --b-dec-init zeros --rescale-acts-by-decoder-norm false"
run() {
    local name=$1; shift
    printf '%-28s ' "$name"
    "$bin" train --toy --quiet "$@" 2>/dev/null |
        awk '/MMCS \(mean/{m=$NF} /reverse MMCS/{r=$NF} /explained variance/{e=$NF} /dead latents/{d=$NF} /training time/{t=$4}
             END{printf "MMCS %s  reverse %s  EV %s  dead %s  time %ss\n", m, r, e, d, t}'
}
echo "steps $S (batch 4096)"
run "plain" $plain --steps "$S"
run "plain + lr 2e-3" $plain --steps "$S" --lr 2e-3
run "plain + cosine decay" $plain --steps "$S" --lr-scheduler cosine
run "plain + geometric median" $plain --steps "$S" --b-dec-init geometric_median
run "plain + rescale by W_dec norm" $plain --steps "$S" --rescale-acts-by-decoder-norm true
run "plain + k 6" $plain --steps "$S" --k 6
# revival: a setting where many latents die (rescaling on), without / with AuxK / ghost grads
dying="$plain --rescale-acts-by-decoder-norm true --dead-feature-window 100"
run "dying, no revival" $dying --steps "$S"
run "dying + AuxK" $dying --steps "$S" --use-auxk true
run "dying + ghost grads" $dying --steps "$S" --use-ghost-grads true
run "cterp defaults" --steps "$S"
