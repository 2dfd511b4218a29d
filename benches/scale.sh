#!/usr/bin/env bash
# Whole-process time and peak memory of `validate` and `plan --offline`
# (text, markdown, JSON) for configs of 1, 100, 1,000 and 10,000 tasks
# (every job new: the largest plan, 2 jobs per task): the README's "scale"
# figures. Each figure is the best of 3 runs; output goes to /dev/null, its
# size is shown. The in-process split (render, plan, markdown, JSON) is
# `cargo bench --bench scale`.
#
# Usage: benches/scale.sh [EVALCTL]   (default: target/release/evalctl)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/evalctl}
if [ "$#" -eq 0 ]; then cargo build --release --quiet; fi
if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time (Debian package)" >&2
  apt-get install -y -qq time >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same configs as `cargo bench --bench scale`, in flow style so that
# 10,000 tasks stay within the 1 MiB evalctl reads.
names=(hellaswag arc_challenge winogrande gsm8k)
for n in 1 100 1000 10000; do
  {
    printf 'defaults:\n  - execution: slurm/default\n  - deployment: vllm\n  - _self_\n'
    printf 'execution:\n  hostname: login\n  account: acct\n  output_dir: /shared/evals\n  walltime: "02:00:00"\n'
    printf 'deployment:\n  hf_model_handle: org/model\n  served_model_name: model\n  tensor_parallel_size: 1\n'
    printf 'evaluation:\n  nemo_evaluator_config:\n    config:\n      params:\n        parallelism: 32\n  tasks:\n'
    for ((i = 0; i < n; i++)); do
      printf '    - {name: %s, id: t%d, nemo_evaluator_config: {config: {params: {limit_samples: %d}}}}\n' \
        "${names[i % 4]}" "$i" "$i"
    done
  } >"$work/tasks-$n.yaml"
done

best() { # best of 3: "seconds kilobytes output-bytes"
  local b_s="" b_kb="" bytes=0
  for _ in 1 2 3; do
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>/dev/null
    read -r s kb < <(tail -n 1 "$work/time")
    bytes=$(stat -c %s "$work/out")
    if [ -z "$b_s" ] || awk -v a="$s" -v b="$b_s" 'BEGIN { exit !(a < b) }'; then b_s=$s; fi
    if [ -z "$b_kb" ] || [ "$kb" -lt "$b_kb" ]; then b_kb=$kb; fi
  done
  echo "$b_s $b_kb $bytes"
}

printf '| tasks | command | time | peak memory | output |\n|---|---|---|---|---|\n'
for n in 1 100 1000 10000; do
  f="$work/tasks-$n.yaml"
  for cmd in "validate" "plan --offline" "plan --offline --format markdown" "plan --offline --format json"; do
    # shellcheck disable=SC2086
    read -r s kb bytes < <(best "$bin" $cmd -q "$f")
    printf '| %d | `%s` | %s s | %d MB | %d KB |\n' "$n" "$cmd" "$s" $((kb / 1024)) $((bytes / 1024))
  done
done
