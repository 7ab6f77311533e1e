#!/usr/bin/env bash
# GPU checks, for a machine with a CUDA device (run from anywhere: `bash bench/gpu_check.sh [OUT_DIR]`).
#
#   1. world     the tiny synthetic world + its student init + its teacher (cvil.world.ensure_world)
#   2. fp16      a few real KD-schedule steps through `cvil train`, train.precision=fp16 (autocast + GradScaler)
#   3. bf16      the same with train.precision=bf16
#   4. torchrun  the same through `torchrun --standalone --nproc_per_node 1 -m cvil train` (the launch path)
#   5. nccl_ddp  two steps of OscarVQA wrapped in DistributedDataParallel on an NCCL process group of one rank,
#                bf16 autocast (cvil's own setup only creates a process group when WORLD_SIZE > 1, so step 4
#                alone does not exercise NCCL)
#   6. throughput  `cvil-bench throughput --size base --device cuda` (every variant beside the naive step, MFU)
#
# Writes OUT_DIR/summary.json and OUT_DIR/summary.md (default OUT_DIR: gpu_check_out), logs per check, and the
# throughput report (throughput_base.json). Exit 0 when every check passed, 1 otherwise. Without a CUDA device it
# prints "no CUDA device" and exits 0 (set GPU_CHECK_REQUIRE=1 to make that exit 1).
# Knobs: PYTHON (default .venv/bin/python if present, else python3), GPU_CHECK_STEPS (throughput rounds, 10),
# GPU_CHECK_COMPILE=1 (also time torch.compile).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device (torch.cuda.is_available() is False with $PY): nothing to check, skipped."
  [ "${GPU_CHECK_REQUIRE:-0}" = "1" ] && exit 1
  exit 0
fi

OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORLD="$OUT/world"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
TORCHRUN=$(dirname "$PY")/torchrun
[ -x "$TORCHRUN" ] || TORCHRUN=torchrun

check() {  # check NAME COMMAND...: run, log to OUT/NAME.log, record rc and seconds
  local name=$1; shift
  local start end rc
  echo "== $name: $*"
  start=$(date +%s%N)
  "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  end=$(date +%s%N)
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", (b - a) / 1e9}')" >> "$RESULTS"
  if [ "$rc" -eq 0 ]; then echo "   ok"; else echo "   FAILED (rc $rc), last lines of $OUT/$name.log:"; tail -n 15 "$OUT/$name.log"; fi
}

# a few steps of the KD schedule: every stage one short epoch on at most 64 questions, no final evaluation
train_overrides() {
  echo "data.root=$WORLD" "model.init=$WORLD/student_init" "model.tokenizer=$WORLD/tokenizers/student" \
       "kd.teacher=$WORLD/teacher/oscar" "kd.teacher_tokenizer=$WORLD/tokenizers/teacher" \
       "tracking.enabled=false" "data.max_regions=50" "data.max_train_examples=64" "data.batch_size=16" \
       "stages.0.epochs=1" "stages.1.epochs=1" "stages.2.epochs=1" "evaluate=[]" "train.log_every=1"
}

check world "$PY" -c "from cvil.world import ensure_world; ensure_world('$WORLD', 'tiny', tracking=False)"
# shellcheck disable=SC2046
check fp16 "$PY" -m cvil train --config configs/synthetic/kd.yaml $(train_overrides) "output_dir=$OUT/run_fp16" train.precision=fp16
# shellcheck disable=SC2046
check bf16 "$PY" -m cvil train --config configs/synthetic/kd.yaml $(train_overrides) "output_dir=$OUT/run_bf16" train.precision=bf16
# shellcheck disable=SC2046
check torchrun "$TORCHRUN" --standalone --nproc_per_node 1 -m cvil train --config configs/synthetic/kd.yaml \
  $(train_overrides) "output_dir=$OUT/run_torchrun" train.precision=bf16

cat > "$OUT/nccl_ddp.py" <<'EOF'
"""Two bf16 steps of OscarVQA under DistributedDataParallel on an NCCL group (one rank per GPU)."""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cvil.models import OscarVQA, oscar_config

dist.init_process_group("nccl")
rank = int(os.environ["LOCAL_RANK"])
device = torch.device("cuda", rank)
torch.cuda.set_device(device)
torch.manual_seed(0)
model = OscarVQA(oscar_config(img_feature_dim=2054, num_labels=100, vocab_size=1000, hidden_size=256,
                              num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)).to(device)
ddp = DistributedDataParallel(model, device_ids=[rank])
opt = torch.optim.AdamW(ddp.parameters(), lr=1e-4, fused=True)
for step in range(2):
    ids = torch.randint(1, 1000, (8, 20), device=device)
    batch = dict(input_ids=ids, token_type_ids=torch.zeros_like(ids),
                 attention_mask=torch.ones(8, 70, dtype=torch.long, device=device),
                 img_feats=torch.randn(8, 50, 2054, device=device), labels=torch.rand(8, 100, device=device))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = ddp(**batch).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    print(f"rank {dist.get_rank()}/{dist.get_world_size()} backend {dist.get_backend()} step {step} loss {loss.item():.4f}")
dist.destroy_process_group()
EOF
check nccl_ddp "$TORCHRUN" --standalone --nproc_per_node 1 "$OUT/nccl_ddp.py"

COMPILE_FLAG=()
[ "${GPU_CHECK_COMPILE:-0}" = "1" ] && COMPILE_FLAG=(--compile)
check throughput "$PY" -m bench.cli throughput --size base --device cuda --steps "${GPU_CHECK_STEPS:-10}" \
  "${COMPILE_FLAG[@]}" --json "$OUT/throughput_base.json"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
checks = []
for line in (out / "results.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    checks.append({"check": name, "passed": rc == "0", "rc": int(rc), "seconds": round(float(seconds or 0), 1)})
summary = {"checks": checks, "passed": all(c["passed"] for c in checks)}
try:
    import torch
    summary["device"] = torch.cuda.get_device_name(0)
    summary["torch"] = torch.__version__
except Exception as exc:  # the summary must still be written
    summary["device"] = f"unknown ({exc})"
from bench.markdown import markdown_table

md = [f"# GPU check on {summary.get('device')}", "",
      markdown_table(["check", "result", "seconds"],
                     [[c["check"], "ok" if c["passed"] else "FAILED (rc %d)" % c["rc"], c["seconds"]] for c in checks])]
report = out / "throughput_base.json"
if report.is_file():
    from bench.throughput.report import format_table

    data = json.loads(report.read_text())
    summary["throughput"] = {r["step"] + "/" + r["variant"]: {k: r[k] for k in ("samples_per_s", "vs_naive", "mfu")}
                             for r in data["rows"]}
    md += ["", "## Throughput (base size)", "", format_table(data)]
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
(out / "summary.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
EOF

if awk -F'\t' '$2 != 0 {bad=1} END {exit bad}' "$RESULTS"; then
  echo "gpu_check: all checks passed ($OUT/summary.md)"
  exit 0
fi
echo "gpu_check: some checks FAILED ($OUT/summary.md)"
exit 1
