#!/usr/bin/env bash
# Validates every launcher example config of ../shared/reference (both
# dialects) with its `???` values supplied by -o. CI-only: the project's own
# tests use fixtures of their own.
set -euo pipefail
bin=${EVALCTL:-target/release/evalctl}
dir=${1:-../shared/reference/launcher-examples}
common=(-o execution.hostname=login.example.com -o execution.account=acct -o execution.output_dir=/shared/evalctl)
fail=0; n=0
for f in "$dir"/*/*.yaml; do
  extra=()
  case "$(basename "$f")" in
    slurm_llama_3_1_8b_instruct.yaml|slurm_vllm_checkpoint_path.yaml)
      extra=(-o deployment.checkpoint_path=/shared/models/llama-3.1-8b-instruct) ;;
    slurm_nvidia_nemotron_3_nano_30b_a3b_nvfp4.yaml)
      extra=(-o evaluation.tasks.ns_hle.nemo_evaluator_config.config.params.extra.judge.url=https://judge.example.com/v1) ;;
    slurm_sglang_auto_export.yaml)
      extra=(-o export.mlflow.tracking_uri=http://mlflow.example.com:5000) ;;
  esac
  n=$((n + 1))
  if ! "$bin" validate -q "$f" "${common[@]}" "${extra[@]}"; then
    echo "FAILED: $f" >&2; fail=$((fail + 1))
  fi
done
echo "launcher examples: $((n - fail))/$n valid"
[ "$fail" -eq 0 ] && [ "$n" -gt 0 ]
