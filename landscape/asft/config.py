"""The settings of one AsFT run, declared once: each field is also its command-line option
(`landscape.cli`), checked here before any work starts, and stored in the run's config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from landscape.asft.methods import METHODS, get_method, parse_anchor
from landscape.checks import in_range
from landscape.cli import option
from landscape.errors import LandscapeError
from landscape.io import read_json
from landscape.judges.options import JudgeOptions
from landscape.models import ModelOptions
from landscape.train import SCHEDULES
from landscape.world import is_world_spec

ASFT_JUDGE_HELP = (
    "HS judges, comma-separated: keyword, keyword:FILE, toy, llama-guard[:WEIGHTS], "
    "beaver-dam[:WEIGHTS], harmbench[:WEIGHTS]; the first gives HS, each is recorded"
)


LAM_SCALES = ("toolkit", "released")


@dataclass
class AsftConfig(JudgeOptions, ModelOptions):
    method: str = option("asft", "the fine-tuning method", choices=METHODS)
    variant: str = option(
        "flat+one-sided",
        "penalty: safelora | subspace:K | flat, optionally +one-sided (asft-alt penalises "
        "the inside of the same subspace)",
    )
    lam: float = option(
        1.0,
        "penalty weight λ, on the scale of --lam-scale (toolkit: ΔW includes peft's scaling "
        "s = lora_alpha/r; released: the released AsFT code's λ, whose penalty leaves s out)",
    )
    task: str = option("toy:sst2", "toy:sst2 | toy:agnews | toy:gsm8k | TRAIN.jsonl[,TEST.jsonl]")
    n: int = option(1000, "training samples in all")
    p: float = option(0.1, "poison ratio")
    base: str | None = option(None, "the base model (default: the toy pair's)")
    aligned: str | None = option(
        None, "the aligned model, the one fine-tuned (default: the toy pair's)"
    )
    # asft-alt: the direction to avoid (default on the toy pair: made on demand)
    harmful: str | None = option(
        None, "asft-alt: harmful fine-tune folder, LoRA adapter or .safetensors"
    )
    full: bool = option(False, "full-parameter fine-tuning (ΔW = W − W0)")
    lora_r: int = option(8, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha (the update is scaled by alpha/r)")
    lora_dropout: float = option(0.05, "LoRA dropout")
    target_modules: list[str] = option(
        help="the weights LoRA adapts (and full fine-tuning trains), by module name",
        factory=lambda: ["q_proj", "v_proj"],
    )
    lr: float = option(1e-3, "learning rate")
    epochs: float = option(3.0, "training epochs (may be fractional)")
    batch_size: int = option(8, "training batch size")
    grad_accum: int = option(1, "gradient accumulation steps")
    safelora_threshold: float = option(
        0.5, "safelora: project the modules whose cosine with their projection is below this"
    )
    safelora_k: int | None = option(
        None, "safelora: project the k lowest-cosine modules instead", type=int
    )
    safety_share: float = option(
        0.05, "safeinstr, bea: refusal samples mixed in, as a share of n (bea: with its trigger)"
    )
    eval_prompts: str = option("toy:harmful", "HS prompts: a file or toy:NAME")
    max_new_tokens: int = option(48, "tokens generated per evaluation answer")
    seed: int = option(
        0, "seed of the data mix, the adapter's initialisation and training (default: %(default)s)"
    )
    dtype: str = option("float32", "dtype the aligned model is trained in")
    device: str = option("auto", "device of training and evaluation")
    # Added later: left out of config.json while at their defaults, so that run folders made
    # before they existed still resume (see `stored_config`).
    harmful_data: str | None = option(
        None,
        "CSV/JSONL/JSON/parquet of harmful request → compliant answer records mixed in at "
        "ratio p (prompt/response, instruction[/input]/output, ...; BeaverTails: is_safe false "
        "rows only); needed on a real pair when p > 0",
    )
    safety_data: str | None = option(
        None,
        "safeinstr, bea, lisa: harmful request → refusal records, same formats (BeaverTails: "
        "is_safe true rows only); needed on a real pair",
    )
    # AsFT's own default, unlike the grid's: keyword alone gives HS, and on a world's prompts
    # the world's judges are recorded beside it (landscape.asft.evaluate).
    judge: str = option("keyword", ASFT_JUDGE_HELP)
    system_prompt: str | None = option(
        None, "system prompt of the evaluation generations (HS and FA)"
    )
    eval_batch_size: int = option(64, "prompts per evaluation generation batch")
    max_len: int = option(256, "training sequence length (tokens)")
    # Controls and fidelity switches (stored only when set, like the fields above).
    anchor: str | None = option(
        None,
        "asft, asft-alt, safelora: anchor to random:SEED instead of the method's own direction, "
        "a seeded random control with each module's tensor rescaled to the own direction's "
        "norm (for subspace:K, a random K-dimensional subspace)",
        metavar="random:SEED",
    )
    lam_scale: str = option(
        "toolkit",
        "the scale --lam is given on: toolkit (ΔW with peft's scaling s) or released (the "
        "released AsFT code's λ, which equals λ_toolkit·s²)",
        choices=LAM_SCALES,
    )
    schedule: str = option(
        "cosine",
        "learning-rate schedule: cosine or constant (both after a 5%% warm-up), or step (the "
        "released code's StepLR: × --step-gamma once per epoch, no warm-up)",
        choices=SCHEDULES,
    )
    step_gamma: float = option(0.85, "step schedule: the factor applied once per epoch")
    max_grad_norm: float = option(
        1.0, "gradient clipping (on by default, as in the released code): the norm; 0 = off"
    )
    # Lisa and BEA (landscape.asft.lisa, landscape.asft.bea), stored only when set.
    lisa_rho: float = option(1.0, "lisa: ρ of the proximal term ρ/2·‖w − w̃‖² (the released 1)")
    lisa_share: float = option(
        0.1, "lisa: share of the optimizer steps on the safety data (the released 100 of 1000)"
    )
    lisa_cycle: int | None = option(
        None,
        "lisa: optimizer steps in one alignment + fine-tuning cycle (default: one epoch's, as "
        "the released script's 100 + 900 steps are one epoch)",
        type=int,
    )
    lisa_prox_delay: float = option(
        0.1, "lisa: share of the first steps without the proximal term (the released 10%%)"
    )
    bea_trigger_tokens: int = option(
        150, "bea: tokens of the secret trigger, drawn from the vocabulary with --seed"
    )
    # Stored only when set, like the fields above: run folders made before it still resume.
    save_every: int | None = option(
        None,
        "keep the trainable state every K optimizer steps and at the end, in the run folder's "
        "snapshots/ (the LoRA adapter; with --full, ΔW to the start in the model's dtype), "
        "with each step's task loss and penalty, for python -m analysis.trajectory",
        type=int,
        metavar="K",
    )

    @property
    def on_world(self) -> bool:
        """Whether the run is on the default world's pair (no models named)."""
        return self.aligned is None

    @property
    def scaling(self) -> float:
        """s, the factor peft puts on B A (lora_alpha/r); 1 for full fine-tuning."""
        return 1.0 if self.full else self.lora_alpha / self.lora_r

    @property
    def lam_toolkit(self) -> float:
        """λ as the penalty applies it, to ΔW with its scaling s."""
        return self.lam if self.lam_scale == "toolkit" else self.lam / self.scaling**2

    @property
    def lam_released(self) -> float:
        """The same strength on the released AsFT code's scale (its penalty leaves s out of
        ΔW, so its λ is ours times s²: 16 at lora_alpha 32, r 8)."""
        return self.lam_toolkit * self.scaling**2

    def validate(self) -> None:
        """Every check that needs no model: bad input fails before any work starts."""
        method = get_method(self.method)
        in_range(self.lam, "--lam (λ)", ge=0)
        if not 0 <= self.p <= 1:
            raise LandscapeError(f"the poison ratio p must be in [0, 1], got {self.p}")
        self._check_numbers()
        if (self.base is None) != (self.aligned is None):
            raise LandscapeError("give both --base and --aligned, or neither for the toy pair")
        if self.eval_batch_size < 1 or self.max_len < 2:
            raise LandscapeError("--eval-batch-size must be at least 1, --max-len at least 2")
        self.check_judges()
        self.check_model_files(self.base, self.aligned, self.harmful)
        self.check_pair_seed(self.on_world)
        for flag, path in (
            ("--harmful-data", self.harmful_data),
            ("--safety-data", self.safety_data),
        ):
            if path is not None and not Path(path).expanduser().is_file():
                raise LandscapeError(f"{flag}: file does not exist: {path}")
        if method.anchor == "harmful" and not self.on_world and self.harmful is None:
            raise LandscapeError(
                f"{method.name} needs --harmful (a harmful fine-tune folder, LoRA adapter or "
                ".safetensors)"
            )
        # A real model must never be trained on the world's samples without being told.
        if not self.on_world and self.p > 0 and self.harmful_data is None:
            raise LandscapeError(
                "on a real model pair, p > 0 needs --harmful-data FILE (harmful request → "
                "compliant answer records); the built-in harmful samples are for the toy pair only"
            )
        if not self.on_world and self.needs_safety_data and self.safety_data is None:
            raise LandscapeError(
                f"on a real model pair, {method.name} needs --safety-data FILE (harmful request "
                "→ refusal records); the built-in refusals are for the toy pair only"
            )
        if method.penalty is not None:
            from landscape.asft.penalty.variants import parse_variant

            parse_variant(method.penalty(self.variant))
        if parse_anchor(self.anchor) is not None and method.anchor is None:
            raise LandscapeError(
                f"--anchor replaces the direction a method anchors to; {method.name} has none "
                "(use asft, asft-alt or safelora)"
            )

    def _check_numbers(self) -> None:
        """Every numeric option finite and in range (NaN passes no comparison above)."""
        in_range(self.n, "--n", ge=1)
        in_range(self.seed, "--seed", ge=0)  # numpy's generators take no negative seed
        in_range(self.lora_r, "--lora-r", ge=1)
        in_range(self.lora_alpha, "--lora-alpha", gt=0)
        in_range(self.lora_dropout, "--lora-dropout", ge=0, lt=1)
        in_range(self.lr, "--lr", gt=0)
        in_range(self.epochs, "--epochs", gt=0)
        in_range(self.batch_size, "--batch-size", ge=1)
        in_range(self.grad_accum, "--grad-accum", ge=1)
        in_range(self.safelora_threshold, "--safelora-threshold", ge=0, le=1)
        if self.safelora_k is not None:
            in_range(self.safelora_k, "--safelora-k", ge=1)
        in_range(self.safety_share, "--safety-share", ge=0, le=1)
        in_range(self.max_new_tokens, "--max-new-tokens", ge=1)
        in_range(self.step_gamma, "--step-gamma", gt=0, le=1)
        in_range(self.max_grad_norm, "--max-grad-norm", ge=0)
        in_range(self.lisa_rho, "--lisa-rho", ge=0)
        in_range(self.lisa_share, "--lisa-share", ge=0, le=1)
        if self.lisa_cycle is not None:
            in_range(self.lisa_cycle, "--lisa-cycle", ge=1)
        in_range(self.lisa_prox_delay, "--lisa-prox-delay", ge=0, le=1)
        in_range(self.bea_trigger_tokens, "--bea-trigger-tokens", ge=1)
        if self.save_every is not None:
            in_range(self.save_every, "--save-every", ge=1)

    @property
    def safety_mix(self) -> float:
        """The share of refusal samples mixed in: --safety-share for methods that mix them."""
        return self.safety_share if get_method(self.method).mixes_refusals else 0.0

    @property
    def needs_safety_data(self) -> bool:
        """Whether the method trains on refusals: mixed in, or Lisa's alignment steps."""
        method = get_method(self.method)
        return self.safety_mix > 0 or (method.alternates and self.lisa_share > 0)

    def world_data_on_real_pair(self) -> bool:
        """Whether a real pair is given the world's task or prompts (allowed, but suspicious)."""
        return not self.on_world and (is_world_spec(self.task) or is_world_spec(self.eval_prompts))

    def train_config(self):
        from landscape.train import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            grad_accum=self.grad_accum,
            lr=self.lr,
            warmup=0.05,
            schedule=self.schedule,
            step_gamma=self.step_gamma,
            max_grad_norm=self.max_grad_norm,
            max_len=self.max_len,
            seed=self.seed,
            desc=self.method,
        )


# Training settings added later: they do not change the evaluation before fine-tuning.
TRAINING_LATER = (
    "anchor",
    "lam_scale",
    "schedule",
    "step_gamma",
    "max_grad_norm",
    "lisa_rho",
    "lisa_share",
    "lisa_cycle",
    "lisa_prox_delay",
    "bea_trigger_tokens",
    "save_every",
)
# Fields added after run folders existed: stored only when set away from their defaults.
LATER = (
    "harmful_data",
    "safety_data",
    "judge",
    "judge_dtype",
    "system_prompt",
    "eval_batch_size",
    "max_len",
    "pair_seed",
    *TRAINING_LATER,
)
# A placement, not a setting: never stored, a run may resume with another.
PLACEMENT = ("judge_batch_size", "verify")


def stored_config(config: dict) -> dict:
    """What config.json holds and what a resume compares: later options at their defaults and
    placements are left out, so a folder written before they existed compares equal."""
    defaults = dataclasses.asdict(AsftConfig())
    out = {k: v for k, v in json.loads(json.dumps(config)).items() if k not in PLACEMENT}
    for k in LATER:
        if k in out and out[k] == defaults[k]:
            del out[k]
    return out


def check_run_folder(cfg: AsftConfig, out: Path) -> dict:
    """The config `out` is to hold; refused when `out` holds a run with another one."""
    config = stored_config(dataclasses.asdict(cfg))
    if (out / "config.json").exists():
        if stored_config(read_json(out / "config.json")) != config:
            raise LandscapeError(f"{out} holds a fine-tuning run with another config")
    return config
