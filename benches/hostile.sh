#!/usr/bin/env bash
# Time and peak memory of `evalctl validate` (which runs every offline
# check and renders every script) on configs of up to 1 MiB built to
# exhaust it: the README's "hostile inputs" figures. The target is an
# answer (a result or a located error, never an abort) within 1 s and
# 256 MB for each. Prints one table row per input; exits 1 when one misses
# the target or ends other than with exit status 0 or 1.
#
# Usage: benches/hostile.sh [EVALCTL]   (default: target/release/evalctl)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/evalctl}
if [ "$#" -eq 0 ]; then cargo build --release --quiet; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'EOF'
import sys, os
d = sys.argv[1]
head = """defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution: {account: acct, output_dir: /shared/results}
target:
  api_endpoint: {url: 'http://host:8000/v1/chat/completions', model_id: m}
evaluation:
  tasks:
    - name: lm-evaluation-harness.gsm8k
"""
LIMIT = 1 << 20
def write(name, body):
    text = head + body
    assert len(text) <= LIMIT, (name, len(text))
    open(os.path.join(d, name + ".yaml"), "w").write(text)

def fill(line_of, budget=LIMIT - len(head) - 100):
    out, i = [], 0
    size = 0
    while True:
        line = line_of(i)
        if size + len(line) > budget:
            return "".join(out)
        out.append(line); size += len(line); i += 1

# Many keys: a flat mapping filling 1 MiB.
write("flat-keys", "x:\n" + fill(lambda i: f"  k{i}: value-{i}\n"))
# A chain of references in file order, and in reverse order (deep).
write("chain-forward", "y:\n  k0: v\n" + fill(lambda i: f"  k{i+1}: ${{y.k{i}}}\n"))
n = 0
body = fill(lambda i: f"  k{i}: ${{y.k{i+1}}}\n")
n = body.count("\n")
write("chain-reverse", "y:\n" + body + f"  k{n}: v\n")
# Each level references the previous one ten times (text).
write("laughs-text", "x:\n  l0: aaaaaaaaaa\n" + "".join(
    f"  l{i}: \"{''.join(f'${{x.l{i-1}}}' for _ in range(10))}\"\n" for i in range(1, 12)))
# Each level references the previous mapping ten times.
write("laughs-maps", "l0: {a: 1, b: 2}\n" + "".join(
    f"l{i}:\n" + "".join(f"  k{k}: ${{l{i-1}}}\n" for k in range(10)) for i in range(1, 30)))
# YAML aliases: ten per level (billion laughs) and nesting through aliases.
write("laughs-aliases", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join(f'*a{i-1}' for _ in range(10))}]\n" for i in range(1, 12)))
write("deep-aliases", f"a0: &a0 {'['*200}1{']'*200}\n" + "".join(
    f"a{i}: &a{i} {'['*200}*a{i-1}{']'*200}\n" for i in range(1, 200)))
# Deep flow nesting, and resolvers nested in one value.
write("deep-nesting", "z: " + "[" * 400000 + "]" * 400000 + "\n")
write("deep-resolvers", "z: \"" + "${oc.select:" * 40000 + "a,b" + "}" * 40000 + "\"\n")
# One value of ~1 MiB, and ~10,000 tasks.
write("long-value", "z: \"" + "a" * (LIMIT - len(head) - 100) + "\"\n")
tasks = fill(lambda i: f"    - {{name: lm-evaluation-harness.gsm8k, id: t{i}}}\n", 520_000)
write("tasks-10k", tasks)
EOF

fail=0
printf '| input | size | exit | time | peak memory |\n|---|---|---|---|---|\n'
for f in "$work"/*.yaml; do
  name=$(basename "$f" .yaml)
  set +e
  /usr/bin/time -f '%e %M' -o "$work/time" "$bin" validate -q "$f" >/dev/null 2>"$work/err"
  rc=$?
  set -e
  read -r secs kb < <(tail -n 1 "$work/time")
  size=$(stat -c %s "$f")
  printf '| %s | %d KB | %d | %s s | %d MB |\n' "$name" $((size / 1024)) "$rc" "$secs" $((kb / 1024))
  if [ "$rc" -gt 1 ] || awk -v s="$secs" -v k="$kb" 'BEGIN { exit !(s > 1.0 || k > 262144) }'; then
    echo "  ^ misses the target: $(head -c 300 "$work/err")" >&2
    fail=1
  fi
done
exit "$fail"
