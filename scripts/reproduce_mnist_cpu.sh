#!/usr/bin/env bash
# The committed MNIST reproductions, at the budget a 2-core CPU affords (results/<study>/):
#   make reproduce-mnist            (or: bash scripts/reproduce_mnist_cpu.sh [STUDY ...])
# Data: the four MNIST files in $VAT_STUDY_DATA or its mnist/ (default: data/, as task.data_root;
# the preflight stops a study whose files are missing, before any trial).
# Store: $STORE (default sqlite:///results/reproductions.db, not committed).
# Each study runs with the overrides below (the budget), then its report is written to
# results/<study>/ with the command in results/<study>/COMMAND.txt. Wall times: README.
set -uo pipefail
cd "$(dirname "$0")/.."
VAT=${VAT:-.venv/bin/vat-study}
export VAT_STUDY_DATA=${VAT_STUDY_DATA:-data}
STORE=${STORE:-sqlite:///results/reproductions.db}

declare -A BUDGET=(
  [vat_implementation_choices]=""
  [mnist100_table3]=""
  [mnist100_curves]=""
  [vat_small_eps_diagnostics]=""
  [vat_implementation_choices_anchors]=""
  [precision_mnist]=""
  [eps_alpha_mnist]="--set task.steps=1000 --set task.eval_every=250 --set probes.rvadv.size=500 --set executor.batch_seeds=3"
  [k_ablation_mnist]="--set task.steps=1000 --set task.eval_every=250 --set probes.rvadv.every=250 --set probes.rvadv.size=500 --set executor.batch_seeds=3"
  [grad_variance_mnist]="--set task.steps=1000 --set task.eval_every=100 --set probes.rvadv.size=500 --set probes.grad_variance.every=100 --set executor.batch_seeds=3"
)
studies=("$@")
[ ${#studies[@]} -eq 0 ] && studies=(mnist100_table3 mnist100_curves vat_small_eps_diagnostics vat_implementation_choices_anchors vat_implementation_choices precision_mnist eps_alpha_mnist k_ablation_mnist grad_variance_mnist)
status=0
for name in "${studies[@]}"; do
  cmd="$VAT run studies/$name.yaml --storage $STORE --no-progress ${BUDGET[$name]:-}"
  echo "== $(date -u +%FT%TZ) $cmd"
  start=$(date +%s)
  $cmd; rc=$?
  [ $rc -le 1 ] || { echo "$name: exit $rc"; status=$rc; continue; }
  dir="results/$name"  # each study's report in its own folder, written once
  mkdir -p "$dir"
  $VAT report "$name" --storage "$STORE" --out "$dir"
  printf 'VAT_STUDY_DATA=<folder with mnist/> vat-study %s\n# exit %s, %s s wall (%s cores)\nvat-study report %s --storage %s --out %s\n' \
    "${cmd#"$VAT "}" "$rc" "$(( $(date +%s) - start ))" "$(nproc)" "$name" "$STORE" "$dir" > "$dir/COMMAND.txt"
done
exit $status
