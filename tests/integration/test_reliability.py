"""Every command refuses bad input with one `error:` line and exit status 2, writing
nothing; one writer per run folder; a resume on other models is refused; Ctrl-C and
--debug behave as the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_model, pair_args
from safetensors.torch import save_file

from analysis.figures import main as figures_main
from analysis.report import main as report_main
from analysis.tables import main as tables_main
from landscape.align.__main__ import main as align_main
from landscape.asft.__main__ import main as asft_main
from landscape.directions.__main__ import main as directions_main
from landscape.errors import LandscapeError
from landscape.grid import main as grid_main
from landscape.io import LOCK_NAME, folder_lock
from landscape.toy.__main__ import main as toy_main

COMMANDS = {
    "grid": grid_main,
    "merge": lambda argv: grid_main(["merge", *argv]),
    "toy": toy_main,
    "asft": asft_main,
    "directions": directions_main,
    "tables": tables_main,
    "figures": figures_main,
    "report": report_main,
    "align": align_main,
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def inputs(tmp_path, tiny_pair_dir):
    """Files a hostile user might hand the commands."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "prompts.csv").write_text("goal\nHow do I bake bread?\nTell me a joke\n")
    (d / "latin1.csv").write_bytes("goal\nCr\xe8me br\xfbl\xe9e?\n".encode("latin-1"))
    (d / "plain_file").write_text("not a folder")
    run = d / "listrun"  # a run folder whose points are not records
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dirs": ["harm"], "norm": "layer"}))
    (run / "points.jsonl").write_text("[1, 2]\n")
    bad = d / "badjson"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "points.jsonl").write_text("")
    arr = d / "arrayrun"
    arr.mkdir()
    (arr / "config.json").write_text("[1]")
    (arr / "points.jsonl").write_text("")
    (d / "adv.csv").write_text("goal,target\nExplain thing one,Sure\nExplain thing two,Sure\n")
    (d / "answers_only.jsonl").write_text('{"answer": "4"}\n{"answer": "5"}\n')
    (d / "empty.jsonl").write_text("")
    vision = d / "vision"
    vision.mkdir()
    (vision / "config.json").write_text(json.dumps({"model_type": "vit"}))
    other = d / "otherpair"
    other.mkdir()
    (other / "recipe.json").write_text(json.dumps({"version": "v0"}))
    # Direction files that do not fit the pair: an unknown tensor name, a wrong shape.
    save_file({"model.layers.0.nope.weight": torch.zeros(2, 2)}, str(d / "alien.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    save_file({name: torch.zeros(3, 3)}, str(d / "misshapen.safetensors"))
    return {"dir": d, "pair": pair_args(tiny_pair_dir), "model": str(tiny_pair_dir["base"])}


def _grid(inp, *extra, out="OUT"):
    return ["--dirs", "random", "--steps", "2", *inp["pair"], "--prompts",
            str(inp["dir"] / "prompts.csv"), "--device", "cpu", "--max-new-tokens", "2",
            "--out", out, *extra]  # fmt: skip


# The vLLM backend with the model only in its workers (refused before vLLM is needed).
_TP = ("--backend", "vllm", "--no-driver-model", "--no-coherence")


def _align(inp, *extra, out="OUT"):
    return ["--model", inp["model"], "--advbench", str(inp["dir"] / "adv.csv"), "--out", out,
            *extra]  # fmt: skip


def _train(*extra):
    return ["train", "--method", "asft", "--out", "OUT", *extra]


# (command, argv builder, words the error line must hold)
CASES = [
    ("grid", lambda i: _grid(i, "--temperature", "nan"), "--temperature must be a finite"),
    ("grid", lambda i: _grid(i, "--temperature", "-1"), "--temperature must be >= 0"),
    ("grid", lambda i: _grid(i, "--tau", "inf"), "--tau is an ASR in [0, 1]"),
    ("grid", lambda i: _grid(i, "--tau", "1.5"), "--tau is an ASR"),
    ("grid", lambda i: _grid(i, "--range", "-0.5", "1e308"), "reaches past"),
    ("grid", lambda i: _grid(i, "--range", "nan", "1"), "--range must be two finite"),
    ("grid", lambda i: _grid(i, "--range", "1", "-1"), "low < high"),
    ("grid", lambda i: _grid(i, "--steps", "0"), "--steps must be at least 2"),
    ("grid", lambda i: _grid(i, "--dirs", "random", "random:3", "--steps", "1000"), "--max-points"),
    ("grid", lambda i: _grid(i, "--max-new-tokens", "0"), "must be at least 1"),
    ("grid", lambda i: _grid(i, "--batch-size", "-3"), "must be at least 1"),
    ("grid", lambda i: _grid(i, "--samples", "0"), "must be at least 1"),
    ("grid", lambda i: _grid(i, "--judge", "keyword,nope"), "unknown judge 'nope'"),
    ("grid", lambda i: _grid(i, "--judge-batch-size", "0"), "--judge-batch-size"),
    ("grid", lambda i: _grid(i, "--epl-search", "--epl-confidence", "1.5"), "--epl-confidence"),
    ("grid", lambda i: _grid(i, "--epl-search", "--epl-tol", "nan"), "--epl-tol"),
    ("grid", lambda i: _grid(i, "--steps", "abc"), "invalid int value"),
    ("grid", lambda i: _grid(i, "--prompts", str(i["dir"] / "latin1.csv")), "is not UTF-8"),
    ("grid", lambda i: _grid(i, "--prompts", str(i["dir"] / "nope.csv")), "does not exist"),
    ("grid", lambda i: _grid(i, out=str(i["dir"] / "plain_file" / "run")), "plain_file"),
    ("asft", lambda i: _train("--batch-size", "0"), "--batch-size must be >= 1"),
    ("asft", lambda i: _train("--grad-accum", "0"), "--grad-accum must be >= 1"),
    ("asft", lambda i: _train("--lr", "nan"), "--lr must be a finite number"),
    ("asft", lambda i: _train("--lr", "0"), "--lr must be > 0"),
    ("asft", lambda i: _train("--lora-r", "0"), "--lora-r must be >= 1"),
    ("asft", lambda i: _train("--lora-dropout", "2"), "--lora-dropout must be"),
    ("asft", lambda i: _train("--safety-share", "-0.5"), "--safety-share must be"),
    ("asft", lambda i: _train("--epochs", "-1"), "--epochs must be > 0"),
    ("asft", lambda i: _train("--lam", "nan"), "--lam (λ) must be a finite"),
    ("asft", lambda i: _train("--lam", "-1"), "--lam (λ) must be >= 0"),
    ("asft", lambda i: _train("--max-new-tokens", "0"), "--max-new-tokens must be >= 1"),
    ("asft", lambda i: _train("--save-every", "0"), "--save-every must be >= 1"),
    ("asft", lambda i: _train("--p", "1.5"), "poison ratio"),
    ("asft", lambda i: _train("--n", "0"), "--n must be >= 1"),
    ("asft", lambda i: _train("--eval-prompts", str(i["dir"] / "nope.csv")), "does not exist"),
    ("asft", lambda i: _train("--judge", "nope"), "unknown judge"),
    ("directions", lambda i: ["save", "sideways", "--out", "OUT.safetensors"], "unknown direction"),
    ("directions", lambda i: ["save", "random", "--out", "OUT.pt"], "must end in .safetensors"),
    (
        "directions",
        lambda i: [
            "save",
            "random",
            *i["pair"],
            "--out",
            str(i["dir"] / "plain_file" / "d.safetensors"),
        ],
        "plain_file",
    ),  # fmt: skip
    ("tables", lambda i: [str(i["dir"] / "listrun"), "--out", "OUT"], "not a JSON object"),
    ("tables", lambda i: [str(i["dir"] / "badjson"), "--out", "OUT"], "not valid JSON"),
    # Zero, negative, NaN and infinite values of the numeric options not covered above.
    ("grid", lambda i: _grid(i, "--steps", "-5"), "--steps must be at least 2"),
    ("grid", lambda i: _grid(i, "--range", "-inf", "1"), "--range must be two finite"),
    ("grid", lambda i: _grid(i, "--temperature", "inf"), "--temperature must be a finite"),
    ("grid", lambda i: _grid(i, "--tau", "-0.1"), "--tau is an ASR"),
    ("grid", lambda i: _grid(i, "--tau", "nan"), "--tau is an ASR"),
    ("grid", lambda i: _grid(i, "--n-prompts", "0"), "--n-prompts"),
    ("grid", lambda i: _grid(i, "--n-prompts", "-2"), "--n-prompts"),
    ("grid", lambda i: _grid(i, "--max-new-tokens", "-1"), "must be at least 1"),
    ("grid", lambda i: _grid(i, "--batch-size", "0"), "must be at least 1"),
    ("grid", lambda i: _grid(i, "--samples", "-1"), "must be at least 1"),
    ("grid", lambda i: _grid(i, "--judge-batch-size", "-4"), "--judge-batch-size"),
    ("grid", lambda i: _grid(i, "--max-points", "0"), "--max-points"),
    ("grid", lambda i: _grid(i, "--epl-search", "--epl-batch", "0"), "--epl-batch"),
    ("grid", lambda i: _grid(i, "--epl-search", "--epl-tol", "-1"), "--epl-tol"),
    ("grid", lambda i: _grid(i, "--epl-search", "--epl-tol", "inf"), "--epl-tol"),
    ("grid", lambda i: _grid(i, "--epl-search", "--epl-confidence", "0"), "--epl-confidence"),
    ("grid", lambda i: _grid(i, "--seed", "-1"), "--seed"),
    ("grid", lambda i: _grid(i, "--step", "3"), "unrecognized arguments: --step"),
    ("grid", lambda i: _grid(i, "--coherence-percentile", "101"), "--coherence-percentile"),
    ("grid", lambda i: _grid(i, "--coherence-percentile", "nan"), "--coherence-percentile"),
    (
        "grid",
        lambda i: _grid(i, "--utility-prompts", str(i["dir"] / "answers_only.jsonl")),
        "no prompt column",
    ),
    ("grid", lambda i: _grid(i, "--utility-prompts", str(i["dir"] / "empty.jsonl")), "no prompts"),
    (
        "grid",
        lambda i: _grid(i, "--utility-prompts", str(i["dir"] / "nope.jsonl")),
        "does not exist",
    ),
    ("grid", lambda i: _grid(i, "--utility-prompts", "toy:nope"), "unknown toy task 'nope'"),
    ("grid", lambda i: _grid(i, "--utility-prompts", "builtin:nope"), "no such built-in set"),
    (
        "grid",
        lambda i: _grid(i, "--utility-prompts", "toy:gsm8k", "--n-utility", "0"),
        "--n-utility",
    ),
    (
        "grid",
        lambda i: _grid(i, "--utility-prompts", "toy:gsm8k", "--n-utility", "101"),
        "--n-utility 101",
    ),
    ("grid", lambda i: _grid(i, "--utility-margin", "1.5"), "--utility-margin must be"),
    ("grid", lambda i: _grid(i, "--coherence-benign", "builtin:nope"), "no such built-in set"),
    (
        "grid",
        lambda i: _grid(i, "--coherence-benign", str(i["dir"] / "empty.jsonl")),
        "no prompts",
    ),
    (
        "grid",
        lambda i: _grid(i, "--no-coherence", "--coherence-benign", "builtin:short-answers"),
        "drop --no-coherence",
    ),
    ("grid", lambda i: _grid(i, "--utility-margin", "-0.1"), "--utility-margin must be"),
    ("grid", lambda i: _grid(i, "--utility-margin", "nan"), "--utility-margin must be a finite"),
    ("grid", lambda i: _grid(i, "--shard", "2/2"), "out of range"),
    # Tensor parallelism, refused without vLLM installed (the tiny pair: 4 heads, 2 KV heads).
    ("grid", lambda i: _grid(i, "--tensor-parallel-size", "2"), "needs --backend vllm"),
    ("grid", lambda i: _grid(i, "--no-driver-model"), "--no-driver-model needs --backend vllm"),
    ("grid", lambda i: _grid(i, *_TP, "--tensor-parallel-size", "0"), "must be at least 1"),
    ("grid", lambda i: _grid(i, *_TP, "--tensor-parallel-size", "3"), "4 attention heads"),
    ("grid", lambda i: _grid(i, *_TP, "--tensor-parallel-size", "4"), "and 2 KV heads"),
    ("grid", lambda i: _grid(i, "--backend", "vllm", "--no-driver-model"), "--no-coherence"),
    ("grid", lambda i: _grid(i, *_TP, "--plan", "--tensor-parallel-size", "3"), "does not divide"),
    ("grid", lambda i: _grid(i, *_TP, "--plan", "--gpu-memory", "1e-6"), "plan does not fit"),
    (
        "grid",
        lambda i: _grid(
            i, *_TP, "--dirs", "harm", "--harmful", str(i["dir"] / "alien.safetensors")
        ),
        "'model.layers.0.nope.weight' is not in the model",
    ),
    (
        "grid",
        lambda i: _grid(
            i, *_TP, "--dirs", "harm", "--harmful", str(i["dir"] / "misshapen.safetensors")
        ),
        "has shape (3, 3), the model's is (32, 32)",
    ),
    ("grid", lambda i: _grid(i, "--shard", "0/2", "--epl-search"), "cannot be split"),
    ("grid", lambda i: _grid(i, "--dirs", "random", "random"), "the same direction twice"),
    ("grid", lambda i: _grid(i, "--dtype", "float7"), "unknown dtype"),
    ("grid", lambda i: _grid(i, "--device", "tpu:9"), "unknown device"),
    ("grid", lambda i: _grid(i, "--scope", "re:["), "bad scope regex"),
    ("grid", lambda i: _grid(i, "--prompt-column", "nope"), "nope"),
    ("grid", lambda i: _grid(i, "--judge", f"keyword:{i['dir'] / 'latin1.csv'}"), "not UTF-8"),
    ("grid", lambda i: _grid(i, "--judge", "keyword,toy", "--early-stop", "on"), "judge 'toy'"),
    (
        "grid",
        lambda i: _grid(i, "--judge", "llama-guard:/no/guard", "--early-stop", "on"),
        "judge 'llama-guard' is not decided by a prefix",
    ),  # fmt: skip
    ("grid", lambda i: _grid(i, "--early-stop", "maybe"), "invalid choice"),
    ("asft", lambda i: _train("--lr", "inf"), "--lr must be a finite number"),
    ("asft", lambda i: _train("--lr", "-1"), "--lr must be > 0"),
    ("asft", lambda i: _train("--epochs", "0"), "--epochs must be > 0"),
    ("asft", lambda i: _train("--epochs", "nan"), "--epochs must be a finite"),
    ("asft", lambda i: _train("--batch-size", "-1"), "--batch-size must be >= 1"),
    ("asft", lambda i: _train("--n", "-5"), "--n must be >= 1"),
    ("asft", lambda i: _train("--p", "nan"), "poison ratio"),
    ("asft", lambda i: _train("--lam", "inf"), "--lam (λ) must be a finite"),
    ("asft", lambda i: _train("--lora-alpha", "0"), "--lora-alpha must be > 0"),
    ("asft", lambda i: _train("--lora-dropout", "nan"), "--lora-dropout must be"),
    ("asft", lambda i: _train("--safelora-threshold", "nan"), "--safelora-threshold"),
    ("asft", lambda i: _train("--safelora-k", "0"), "--safelora-k"),
    ("asft", lambda i: _train("--safety-share", "1.5"), "--safety-share must be"),
    ("asft", lambda i: _train("--eval-batch-size", "0"), "--eval-batch-size"),
    ("asft", lambda i: _train("--max-len", "1"), "--max-len"),
    ("asft", lambda i: _train("--judge-batch-size", "0"), "--judge-batch-size"),
    ("asft", lambda i: _train("--variant", "subspace:0"), "subspace"),
    ("asft", lambda i: _train("--task", str(i["dir"] / "nope.jsonl")), "nope.jsonl"),
    ("asft", lambda i: _train("--task", str(i["dir"] / "latin1.csv")), "not UTF-8"),
    ("asft", lambda i: _train("--harmful-data", str(i["dir"] / "nope.csv")), "does not exist"),
    ("asft", lambda i: _train("--seed", "-1"), "--seed"),
    ("asft", lambda i: _train("--step-gamma", "0"), "--step-gamma"),
    ("asft", lambda i: _train("--step-gamma", "1.5"), "--step-gamma"),
    ("asft", lambda i: _train("--max-grad-norm", "-1"), "--max-grad-norm"),
    ("asft", lambda i: _train("--max-grad-norm", "nan"), "--max-grad-norm"),
    ("asft", lambda i: _train("--schedule", "linear"), "invalid choice"),
    ("asft", lambda i: _train("--anchor", "random:x"), "random:SEED"),
    ("asft", lambda i: _train("--method", "sft", "--anchor", "random:1"), "sft has none"),
    ("asft", lambda i: _train("--variant", "l2+one-sided"), "isotropic control"),
    ("asft", lambda i: ["sweep", "--out", "OUT", "--lams", "-1"], "--lams"),
    ("asft", lambda i: ["sweep", "--out", "OUT", "--p", "2"], "poison ratio"),
    ("asft", lambda i: ["sweep", "--out", "OUT", "--seeds", "0", "0"], "must not repeat"),
    ("asft", lambda i: _train("--dtype", "float7"), "unknown dtype"),
    ("asft", lambda i: _train("--out", str(i["dir"] / "plain_file" / "run")), "plain_file"),
    ("asft", lambda i: ["compare", "--out", "OUT", "--poison-ratio", "2"], "poison ratio"),
    ("asft", lambda i: ["compare", "--out", "OUT", "--methods", "nope"], "invalid choice"),
    ("asft", lambda i: _train("--method", "lisa", "--lisa-rho", "-1"), "--lisa-rho must be >= 0"),
    ("asft", lambda i: _train("--method", "lisa", "--lisa-rho", "nan"), "--lisa-rho must be a"),
    ("asft", lambda i: _train("--method", "lisa", "--lisa-share", "1.5"), "--lisa-share must be"),
    ("asft", lambda i: _train("--method", "lisa", "--lisa-share", "-0.1"), "--lisa-share must be"),
    ("asft", lambda i: _train("--method", "lisa", "--lisa-cycle", "0"), "--lisa-cycle must be"),
    ("asft", lambda i: _train("--method", "lisa", "--lisa-prox-delay", "2"), "--lisa-prox-delay"),
    ("asft", lambda i: _train("--method", "bea", "--bea-trigger-tokens", "0"), "--bea-trigger"),
    (
        "asft",
        lambda i: _train("--method", "bea", "--p", "0", *i["pair"]),
        "bea needs --safety-data",
    ),
    (
        "asft",
        lambda i: _train("--method", "lisa-base", "--p", "0", *i["pair"]),
        "lisa-base needs --safety-data",
    ),  # fmt: skip
    (
        "asft",
        lambda i: [
            "compare",
            "--out",
            "OUT",
            "--methods",
            "sft",
            "lisa-aligned",
            "--poison-ratio",
            "0",
            *i["pair"],
        ],
        "lisa-aligned needs --safety-data",
    ),  # fmt: skip
    ("directions", lambda i: ["samples", "--samples", "0", "--out", "OUT"], "--samples"),
    (
        "directions",
        lambda i: ["save", "harmful", *i["pair"], "--out", "OUT.safetensors"],
        "needs --source",
    ),  # fmt: skip
    (
        "directions",
        lambda i: ["save", "random", "--seed", "-1", "--out", "OUT.safetensors"],
        "--seed",
    ),  # fmt: skip
    ("merge", lambda i: [str(i["dir"] / "listrun"), "--out", "OUT"], "not a shard"),
    ("merge", lambda i: [str(i["dir"]), "--out", "OUT"], "not a run folder"),
    ("merge", lambda i: [str(i["dir"] / "arrayrun"), "--out", str(i["dir"])], "not an empty"),
    ("tables", lambda i: [str(i["dir"] / "nope"), "--out", "OUT"], "nope"),
    (
        "tables",
        lambda i: [str(i["dir"] / "arrayrun"), "--out", str(i["dir"] / "plain_file")],
        "plain_file",
    ),  # fmt: skip
    ("figures", lambda i: [str(i["dir"] / "nope"), "--out", "OUT"], "nope"),
    (
        "figures",
        lambda i: [str(i["dir"] / "arrayrun"), "--kind", "pie", "--out", "OUT"],
        "invalid choice",
    ),  # fmt: skip
    ("toy", lambda i: ["--seed", "-1"], "--seed"),
    ("toy", lambda i: ["--seed", "x"], "invalid int value"),
    ("tables", lambda i: [str(i["dir"] / "arrayrun"), "--out", "OUT"], "does not hold a config"),
    ("figures", lambda i: [str(i["dir"] / "listrun"), "--out", "OUT"], "not a JSON object"),
    ("figures", lambda i: [str(i["dir"] / "badjson"), "--out", "OUT"], "not valid JSON"),
    ("figures", lambda i: [str(i["dir"] / "arrayrun"), "--out", "OUT"], "does not hold a config"),
    ("report", lambda i: [str(i["dir"] / "nope"), "--out", "OUT"], "no such folder"),
    ("report", lambda i: [str(i["dir"]), "--out", "OUT"], "is not a run folder"),
    ("report", lambda i: [str(i["dir"] / "listrun"), "--out", "OUT"], "not a JSON object"),
    ("report", lambda i: [str(i["dir"] / "badjson")], "not valid JSON"),
    ("report", lambda i: [str(i["dir"] / "plain_file")], "is a file"),
    (
        "report",
        lambda i: [str(i["dir"] / "listrun"), "--out", str(i["dir"] / "plain_file")],
        "plain_file",
    ),  # fmt: skip
    ("report", lambda i: [str(i["dir"] / "listrun"), "--plotlyjs", "web"], "invalid choice"),
    ("align", lambda i: ["--model", i["model"], "--out", "OUT"], "--advbench is required"),
    ("align", lambda i: _align(i, "--model", str(i["dir"] / "nope")), "no such file or folder"),
    ("align", lambda i: _align(i, "--model", str(i["dir"] / "vision")), "not a causal language"),
    ("align", lambda i: _align(i, "--model", str(i["dir"] / "prompts.csv")), "must be a .gguf"),
    (
        "align",
        lambda i: _align(i, "--advbench", str(i["dir"] / "prompts.csv")),
        "no compliant opening column",
    ),  # fmt: skip
    ("align", lambda i: _align(i, "--advbench", str(i["dir"] / "no.csv")), "AdvBench file not"),
    ("align", lambda i: _align(i, out=str(i["dir"] / "otherpair")), "holds a different pair"),
    ("align", lambda i: _align(i, out=str(i["dir"] / "listrun")), "holds no pair"),
    ("align", lambda i: _align(i, out=str(i["dir"] / "plain_file")), "is a file"),
    ("align", lambda i: _align(i, "--train-share", "1"), "--train-share must be between"),
    ("align", lambda i: _align(i, "--epochs", "0"), "--epochs"),
    ("align", lambda i: _align(i, "--lora", "-1"), "--lora"),
    ("align", lambda i: _align(i, "--n-eval", "1"), "--n-eval"),
]


@pytest.mark.parametrize("cmd, argv, words", CASES, ids=[f"{c}-{w}" for c, _, w in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    cmd, argv, words, inputs, tmp_path, capsys
):
    out = tmp_path / "out"
    args = [a.replace("OUT", str(out)) for a in argv(inputs)]
    before = _tree(tmp_path)
    try:
        rc = COMMANDS[cmd](args)
    except SystemExit as e:  # argparse's own usage errors exit here
        rc = e.code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert rc == 2, err
    assert last.startswith("error:") and words in last, last
    assert "Traceback" not in err and err.count("error:") == 1
    assert _tree(tmp_path) == before  # no file or folder left behind


def test_tensor_parallel_beyond_the_devices_present(inputs, tmp_path, capsys, monkeypatch):
    # As on a machine with one device (a CPU core here), whatever this one has.
    monkeypatch.setattr("landscape.generate.tp.devices_present", lambda: (1, "CPU cores"))
    out = tmp_path / "out"
    rc = grid_main(_grid(inputs, *_TP, "--tensor-parallel-size", "2", out=str(out)))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0] == "error: --tensor-parallel-size 2 exceeds the 1 CPU cores present"
    assert not out.exists()


def test_plan_prints_the_memory_per_gpu_and_writes_nothing(inputs, tmp_path, capsys):
    before = _tree(tmp_path)
    argv = _grid(inputs, *_TP, "--plan", "--tensor-parallel-size", "2", "--gpu-memory", "80")
    assert grid_main([a.replace("OUT", str(tmp_path / "out")) for a in argv]) == 0
    text = capsys.readouterr().out
    assert "tensor parallel 2, per GPU of 80.0 GB (budget 72.0 GB)" in text
    for part in ("live weights", "θ0", "directions", "KV cache", "fits"):
        assert part in text
    assert _tree(tmp_path) == before


def test_negative_numbers_in_any_notation_are_values(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    rc = grid_main(_grid(inputs, "--range", "-1e-3", "1e-3", out=str(out)))
    assert rc == 0, capsys.readouterr().err
    coords = [json.loads(x)["coords"] for x in (out / "points.jsonl").read_text().splitlines()]
    assert sorted(c[0] for c in coords) == [-1e-3, 0.0, 1e-3]


def test_a_second_writer_is_refused_and_the_folder_kept(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    assert grid_main(_grid(inputs, out=str(out))) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME}
    capsys.readouterr()
    with folder_lock(out):  # as another process would hold it for its run
        rc = grid_main(_grid(inputs, "--steps", "2", out=str(out)))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "being written by another process" in err and "pid" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME} == files


def test_a_dead_writers_lock_does_not_block(inputs, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("999999\n")  # left by a killed run: no process holds it
    assert grid_main(_grid(inputs, out=str(out))) == 0
    assert (out / "summary.json").is_file()


def test_a_failed_start_leaves_no_folder(inputs, tmp_path, monkeypatch):
    import landscape.grid.run as run

    def broken(*a, **k):
        raise LandscapeError("cannot load")

    monkeypatch.setattr(run, "load_model", broken)
    out = tmp_path / "run"
    assert grid_main(_grid(inputs, out=str(out))) == 2
    assert not out.exists()


def test_resume_on_other_weights_is_refused(
    inputs, tmp_path, tiny_pair_dir, tiny_tokenizer, capsys
):
    out = tmp_path / "run"
    args = _grid(inputs, "--steps", "3", out=str(out))
    assert grid_main(args) == 0
    (out / "summary.json").unlink()  # as if killed before the end
    points = (out / "points.jsonl").read_bytes()
    other = make_tiny_model(tiny_tokenizer, seed=7)  # the same folder, other weights
    other.save_pretrained(tiny_pair_dir["aligned"])
    capsys.readouterr()
    assert grid_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "another aligned model" in err
    assert (out / "points.jsonl").read_bytes() == points and not (out / "summary.json").exists()


def test_resume_along_another_direction_is_refused(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    args = _grid(inputs, "--steps", "3", out=str(out))
    assert grid_main(args) == 0
    env = json.loads((out / "env.json").read_text())
    env["fingerprint_directions"]["random"] = "0" * 16  # the record of another direction
    (out / "env.json").write_text(json.dumps(env))
    capsys.readouterr()
    assert grid_main(args) == 2
    assert "another random direction" in capsys.readouterr().err


def test_debug_shows_the_traceback(inputs, tmp_path):
    with pytest.raises(LandscapeError, match="--temperature"):
        grid_main(_grid(inputs, "--temperature", "nan", "--debug", out=str(tmp_path / "r")))


def test_a_full_disk_is_one_line(inputs, tmp_path, monkeypatch, capsys):
    import errno

    import landscape.store as store

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run"))

    monkeypatch.setattr(store.RunStore, "append_point", full)
    assert grid_main(_grid(inputs, out=str(tmp_path / "run"))) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {tmp_path / 'run'}: no space left on device"
    monkeypatch.undo()  # space again: the rerun finishes
    assert grid_main(_grid(inputs, out=str(tmp_path / "run"))) == 0


def test_toy_cli_reports_a_cache_it_cannot_use(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.write_text("a file, not a folder")
    monkeypatch.setenv("LANDSCAPE_CACHE", str(cache))
    assert toy_main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and str(cache) in err


def test_a_prompt_longer_than_the_context_is_refused_before_writing(inputs, tmp_path, capsys):
    long = inputs["dir"] / "long.csv"
    long.write_text("goal\n" + "bread " * 400 + "\n")  # the tiny models' context is 256
    out = tmp_path / "run"
    args = _grid(inputs, "--prompts", str(long), out=str(out))
    assert grid_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: prompt 1 is") and "256-token context" in err
    assert not out.exists()
