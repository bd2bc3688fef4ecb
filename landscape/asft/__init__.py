"""AsFT: safety-anchored fine-tuning (penalty variants, baselines, before/after evaluation).

`landscape.asft.penalty` holds the penalty L_pen = λ · Σ_modules ‖C⊥ ΔW‖²_F and its variants.
"""
