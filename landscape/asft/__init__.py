"""AsFT: safety-anchored fine-tuning (penalty variants, baselines, before/after evaluation).

- `config`: `AsftConfig`, the settings of a run (each also its command-line option);
- `methods`: the methods (sft, asft, asft-alt, safelora, safeinstr, lisa, lisa-base,
  lisa-aligned, bea) and what each does;
- `data`: the task, the harmful and refusal pools, the poisoned mix;
- `penalty`: the penalty L_pen = λ · Σ_modules ‖C⊥ ΔW‖²_F and its variants;
- `safelora`: Safe LoRA's post-hoc projection; `lisa`: Lisa's bi-state optimisation (a hook
  of the training loop); `bea`: BEA's trigger;
- `finetune`: one run; `evaluate`: its HS and FA; `compare`: methods × poison ratios.
"""
