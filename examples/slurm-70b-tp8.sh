#!/bin/bash
# A 2-D landscape of Llama-2-70B-chat on 4 nodes of 8 GPUs: each array task runs one vLLM
# engine at tensor parallel size 8 over its share of the grid (--shard I/4); the shard folders
# are then merged as usual. Plan first (no GPU needed):
#   python -m landscape.grid --plan --backend vllm --tensor-parallel-size 8 --gpu-memory 80 \
#       --aligned "$ALIGNED" --dirs aligned harm
# Submit: sbatch examples/slurm-70b-tp8.sh; then, once all four tasks have finished:
#   python -m landscape.grid merge runs/l2-70b-2d/shard-* --out runs/l2-70b-2d/all
# A preempted task resumes where it stopped when it is submitted again (same command).
#SBATCH --job-name=landscape-70b
#SBATCH --array=0-3
#SBATCH --nodes=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --mem=512G
#SBATCH --time=24:00:00
set -euo pipefail

# Local folders with config.json, tokenizer and safetensors (the workers load them).
BASE=${BASE:-/models/Llama-2-70b-hf}
ALIGNED=${ALIGNED:-/models/Llama-2-70b-chat-hf}
# The harmful direction, made once on a CPU node and shared by every task:
#   (runs/l2-70b-harmful: the merged harmful fine-tune, a model folder like the others)
#   python -m landscape.directions stream --base "$ALIGNED" --aligned runs/l2-70b-harmful \
#       --kind harmful --out runs/l2-70b-harm.safetensors
HARMFUL=${HARMFUL:-runs/l2-70b-harm.safetensors}
PROMPTS=${PROMPTS:-data/advbench/harmful_behaviors.csv}
SHARDS=4
I=${SLURM_ARRAY_TASK_ID}

export HF_HUB_OFFLINE=1
python -m landscape.grid \
    --backend vllm --tensor-parallel-size 8 --dtype bfloat16 --no-coherence \
    --base "$BASE" --aligned "$ALIGNED" --dirs aligned harm --harmful "$HARMFUL" \
    --prompts "$PROMPTS" --n-prompts 80 --max-new-tokens 128 \
    --steps 21 --range -0.5 0.5 --shard "$I/$SHARDS" --out "runs/l2-70b-2d/shard-$I"
