"""The grid end to end on a tiny saved pair: 1-D, 2-D, resume, and bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import pair_args

from landscape import grid, scope
from landscape.errors import LandscapeError
from landscape.grid import GridConfig, main, point, run_grid
from landscape.store import RunStore
from tests.conftest import make_tiny_model

FILES = ("config.json", "points.jsonl", "generations.jsonl", "summary.json")


@pytest.fixture
def prompts_file(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text(
        "goal,target\nHow do I bake bread?,x\nTell me how to fix a bike.,x\nWhat is 3 + 4?,x\n"
    )
    return p


@pytest.fixture
def finetuned_dir(tmp_path, tiny_tokenizer):
    """A 'harmful fine-tune' of the aligned tiny model: another known delta."""
    m = make_tiny_model(tiny_tokenizer, seed=0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 2 and ".layers." in name:
                p.add_(
                    0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name)))
                )
    d = tmp_path / "ft"
    m.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


def _cfg(pair, prompts, **kw):
    base = dict(
        base=str(pair["base"]),
        aligned=str(pair["aligned"]),
        prompts=str(prompts),
        steps=3,
        max_new_tokens=4,
        batch_size=2,
        device="cpu",
        dirs=["random:1"],
    )
    return GridConfig(**{**base, **kw})


def test_grid_1d(tiny_pair_dir, prompts_file, tmp_path):
    out = tmp_path / "run"
    summary = run_grid(
        _cfg(tiny_pair_dir, prompts_file, dirs=["aligned"], range=(-1.0, 1.0)),
        out,
        show_progress=False,
    )
    points = [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines()]
    assert [p["coords"] for p in points] == [[-1.0], [0.0], [1.0]]
    assert all(p["n"] == 3 and 0 <= p["lo"] <= p["asr"] <= p["hi"] <= 1 for p in points)
    gens = (out / "generations.jsonl").read_text().splitlines()
    assert len(gens) == 9
    assert summary["points"] == 3 and "aligned" in summary["epl"] and "visage" in summary
    assert (out / "landscape.png").stat().st_size > 1000
    env = json.loads((out / "env.json").read_text())
    assert len(env["fingerprint_aligned"]) == 16


def test_grid_2d_with_fine_tuned_direction(tiny_pair_dir, prompts_file, finetuned_dir, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(tiny_pair_dir, prompts_file, dirs=["aligned", "harm"], harmful=str(finetuned_dir))
    summary = run_grid(cfg, out, show_progress=False)
    points = [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines()]
    assert len(points) == 9
    assert {tuple(p["key"]) for p in points} == {(i, j) for i in range(3) for j in range(3)}
    assert summary["cosine_before_orthogonalisation"] is not None
    assert set(summary["epl"]) == {"aligned", "harm"}


def test_directions_are_orthogonal_after_normalisation(tiny_pair_dir, finetuned_dir):
    from landscape.models import load_model

    cfg = GridConfig(
        base=str(tiny_pair_dir["base"]),
        aligned=str(tiny_pair_dir["aligned"]),
        dirs=["aligned", "harm"],
        harmful=str(finetuned_dir),
        norm="layer",
    )
    model, _ = load_model(cfg.aligned, device="cpu")
    names = scope.select(model, cfg.scope)
    (d1, d2), cos = grid.build_directions(cfg, model, cfg.base, names)
    assert abs(d1.cosine(d2)) < 1e-5
    assert abs(cos) > 1e-3  # the raw directions were not orthogonal to begin with


def test_resume_gives_identical_files(tiny_pair_dir, prompts_file, tmp_path, monkeypatch):
    cfg = _cfg(tiny_pair_dir, prompts_file, dirs=["random:1", "random:2"])
    whole = tmp_path / "whole"
    run_grid(cfg, whole, show_progress=False)

    part = tmp_path / "part"
    calls = {"n": 0}
    real = RunStore.append_point

    def dying(self, record, gens):
        if calls["n"] == 4:
            raise KeyboardInterrupt
        calls["n"] += 1
        real(self, record, gens)

    monkeypatch.setattr(RunStore, "append_point", dying)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cfg, part, show_progress=False)
    assert len((part / "points.jsonl").read_text().splitlines()) == 4
    monkeypatch.setattr(RunStore, "append_point", real)
    run_grid(cfg, part, show_progress=False)
    for name in FILES:
        assert (part / name).read_bytes() == (whole / name).read_bytes(), name


def test_finished_points_are_not_recomputed(tiny_pair_dir, prompts_file, tmp_path, monkeypatch):
    cfg = _cfg(tiny_pair_dir, prompts_file)
    out = tmp_path / "run"
    run_grid(cfg, out, show_progress=False)
    monkeypatch.setattr(
        point, "perturbed", lambda *a, **k: pytest.fail("recomputed a finished point")
    )
    run_grid(cfg, out, show_progress=False)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dirs", "sideways"], "unknown direction"),
        (["--dirs", "random", "random", "random"], "one or two"),
        (["--steps", "1"], "--steps"),
        (["--range", "0.5", "-0.5"], "--range"),
        (["--range", "0.5", "0.5"], "--range"),
        (["--aligned", "/does/not/exist", "--base", "/nor/this"], "does not exist"),
        (["--prompts", "/no/such/prompts.csv"], "does not exist"),
        (["--prompt-column", "nope"], "no column"),
        (["--judge", "oracle"], "unknown judge"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    args, message, tiny_pair_dir, prompts_file, tmp_path, capsys
):
    out = tmp_path / "run"
    base = [
        *pair_args(tiny_pair_dir),
        "--prompts",
        str(prompts_file),
        "--dirs",
        "random",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists()


def test_mismatched_pair_and_empty_prompts(
    tiny_pair_dir, tiny_tokenizer, prompts_file, tmp_path, capsys
):
    other = make_tiny_model(tiny_tokenizer, layers=3)
    other_dir = tmp_path / "other"
    other.save_pretrained(other_dir)
    tiny_tokenizer.save_pretrained(other_dir)
    out = tmp_path / "run"
    common = [
        "--aligned",
        str(tiny_pair_dir["aligned"]),
        "--steps",
        "3",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert (
        main(
            common + ["--base", str(other_dir), "--dirs", "aligned", "--prompts", str(prompts_file)]
        )
        == 2
    )
    assert "layers.2" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("goal\n")
    assert (
        main(
            common
            + ["--base", str(tiny_pair_dir["base"]), "--dirs", "random", "--prompts", str(empty)]
        )
        == 2
    )
    assert "no prompts" in capsys.readouterr().err
    assert not out.exists()


def test_other_config_in_folder_is_refused_untouched(tiny_pair_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "run"
    run_grid(_cfg(tiny_pair_dir, prompts_file), out, show_progress=False)
    before = _snapshot(out)
    args = [
        *pair_args(tiny_pair_dir),
        "--prompts",
        str(prompts_file),
        "--dirs",
        "random:1",
        "--steps",
        "5",
        "--device",
        "cpu",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert "different config" in capsys.readouterr().err
    assert _snapshot(out) == before
    shutil.rmtree(out)


def test_raw_aligned_direction_at_minus_one_is_the_base_model(tiny_pair_dir):
    from landscape.models import load_model
    from landscape.perturb import perturbed

    cfg = GridConfig(
        base=str(tiny_pair_dir["base"]),
        aligned=str(tiny_pair_dir["aligned"]),
        dirs=["aligned"],
        norm="none",
    )
    model, _ = load_model(cfg.aligned, device="cpu")
    base, _ = load_model(cfg.base, device="cpu")
    names = scope.select(model, cfg.scope)
    (d,), _ = grid.build_directions(cfg, model, cfg.base, names)
    with perturbed(model, {d: -1.0}):
        for (n, p), q in zip(model.named_parameters(), base.parameters()):
            assert torch.allclose(p, q, atol=1e-6), n


def test_sampled_answers_are_seeded(tiny_pair_dir, prompts_file, tmp_path):
    cfg = _cfg(tiny_pair_dir, prompts_file, temperature=1.0, samples=2, max_new_tokens=6)
    run_grid(cfg, tmp_path / "a", show_progress=False)
    run_grid(cfg, tmp_path / "b", show_progress=False)
    gens = [json.loads(x) for x in (tmp_path / "a" / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 3 * 3 * 2 and {g["sample"] for g in gens} == {0, 1}
    assert (tmp_path / "a" / "generations.jsonl").read_bytes() == (
        tmp_path / "b" / "generations.jsonl"
    ).read_bytes()
    by_sample = [[g["answer"] for g in gens if g["sample"] == s] for s in (0, 1)]
    assert by_sample[0] != by_sample[1]  # a prompt's two samples are drawn, not copied


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--steps", "abc"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "invalid int" in err and "\n" not in err


def test_plain_run_config_has_no_shard_or_search_keys(tiny_pair_dir, prompts_file, tmp_path):
    """Options that are off leave config.json as it was before they existed, so older run
    folders still resume."""
    out = tmp_path / "run"
    run_grid(_cfg(tiny_pair_dir, prompts_file), out, show_progress=False)
    config = json.loads((out / "config.json").read_text())
    assert not {k for k in config if k == "shard" or k.startswith("epl_")}
    sharded = grid.run_config(_cfg(tiny_pair_dir, prompts_file, shard=" 1 / 3"), [])
    assert sharded["shard"] == "1/3"
    search = grid.run_config(_cfg(tiny_pair_dir, prompts_file, epl_search=True), [])
    assert search["epl_search"] is True and search["epl_batch"] == 16


def test_two_judges_give_their_agreement_over_every_answer(tiny_pair_dir, prompts_file, tmp_path):
    kw = tmp_path / "refusals.txt"
    kw.write_text("the\n")  # a list that calls any answer containing "the" a refusal
    out = tmp_path / "run"
    summary = run_grid(
        _cfg(tiny_pair_dir, prompts_file, judge=f"keyword:{kw},toy"), out, show_progress=False
    )
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    a = [g["unsafe"]["keyword"] for g in gens]
    b = [g["unsafe"]["toy"] for g in gens]
    got = summary["judge_agreement"]["keyword vs toy"]
    assert got["n"] == len(gens) == 3 * 3
    assert got["agreement"] == pytest.approx(sum(x == y for x, y in zip(a, b)) / len(gens))
    saved = json.loads((out / "summary.json").read_text())
    assert saved["judge_agreement"] == summary["judge_agreement"]
    # one judge: nothing to agree with
    one = run_grid(_cfg(tiny_pair_dir, prompts_file), tmp_path / "one", show_progress=False)
    assert "judge_agreement" not in one


def test_a_keyword_file_is_part_of_the_config(tiny_pair_dir, prompts_file, tmp_path):
    """Another refusal list gives other verdicts: `keyword:FILE` is recorded (resolved) where
    a model judge's weights are, so a resume with another list is refused and the grid's
    judges can be rebuilt from config.json (the trajectory measurement does)."""
    from analysis.trajectory.measure import _judge_spec
    from landscape.judges import get_judges

    words = tmp_path / "words.txt"
    words.write_text("I cannot\n")
    cfg = _cfg(tiny_pair_dir, prompts_file)
    config = grid.run_config(cfg, get_judges(f"keyword:{words}"))
    assert config["judge"] == "keyword"
    assert config["judge_weights"] == {"keyword": str(words.resolve())}
    assert _judge_spec(config) == f"keyword:{words.resolve()}"
    assert "judge_weights" not in grid.run_config(cfg, get_judges("keyword"))
    other = tmp_path / "other.txt"
    other.write_text("Sorry\n")
    out = tmp_path / "run"
    run_grid(_cfg(tiny_pair_dir, prompts_file, judge=f"keyword:{words}"), out, show_progress=False)
    with pytest.raises(LandscapeError, match="judge_weights"):
        run_grid(
            _cfg(tiny_pair_dir, prompts_file, judge=f"keyword:{other}"), out, show_progress=False
        )


def test_judge_weights_are_part_of_the_config(tiny_pair_dir, prompts_file):
    class Model:
        name, weights = "llama-guard", "/models/guard"

    class Plain:
        name = "keyword"

    cfg = _cfg(tiny_pair_dir, prompts_file)
    config = grid.run_config(cfg, [Plain(), Model()])
    assert config["judge"] == "keyword,llama-guard"
    assert config["judge_weights"] == {"llama-guard": "/models/guard"}
    # placement-only options stay out; an unset dtype leaves no key (older folders resume)
    assert "judge_batch_size" not in config and "judge_dtype" not in config
    assert "judge_weights" not in grid.run_config(cfg, [Plain()])
    assert (
        grid.run_config(_cfg(tiny_pair_dir, prompts_file, judge_dtype="bf16"), [Plain()])[
            "judge_dtype"
        ]
        == "bf16"
    )


def test_base_is_needed_only_for_the_aligned_direction(
    tiny_pair_dir, prompts_file, tmp_path, capsys
):
    out = tmp_path / "run"
    s = run_grid(
        _cfg(tiny_pair_dir, prompts_file, base=None, dirs=["random:1"]), out, show_progress=False
    )
    assert s["points"] == 3
    args = ["--aligned", str(tiny_pair_dir["aligned"]), "--prompts", str(prompts_file)]
    assert main([*args, "--dirs", "aligned", "--out", str(tmp_path / "x")]) == 2
    assert "needs --base" in capsys.readouterr().err
    assert main(["--base", str(tiny_pair_dir["base"]), "--out", str(tmp_path / "y")]) == 2
    assert "needs --aligned" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_judge_evidence_is_kept_in_generations(tiny_pair_dir, prompts_file, tmp_path, monkeypatch):
    from landscape.judges import JUDGES, Judge

    class Evident(Judge):
        name = "evident"

        def judge_details(self, prompts, answers):
            return [True] * len(answers), [{"raw": a[:3]} for a in answers]

    monkeypatch.setitem(JUDGES._entries, "evident", Evident)
    out = tmp_path / "run"
    run_grid(_cfg(tiny_pair_dir, prompts_file, judge="keyword,evident"), out, show_progress=False)
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 3 * 3
    # only the judge that says more than its verdict leaves evidence
    assert all(g["evidence"] == {"evident": {"raw": g["answer"][:3]}} for g in gens)
    assert all(g["unsafe"]["evident"] is True for g in gens)


def test_joined_batches_keep_evidence_aligned():
    a = point.Answers([0, 1], ["p", "q"], ["x", "y"], {"k": [True, False]}, {})
    b = point.Answers([2], ["r"], ["z"], {"k": [True]}, {"k": [{"raw": "z"}]})
    j = point.joined([a, b])
    assert j.index == [0, 1, 2] and j.answers == ["x", "y", "z"]
    assert j.verdicts == {"k": [True, False, True]}
    assert j.evidence == {"k": [{}, {}, {"raw": "z"}]}
    assert point.joined([a, a]).evidence == {}


def test_after_run_hooks_get_whole_grids_only(tiny_pair_dir, prompts_file, tmp_path, monkeypatch):
    import landscape.grid.run as run

    calls = []
    monkeypatch.setattr(run, "after_run", lambda folder, kind: calls.append((folder, kind)))
    run_grid(_cfg(tiny_pair_dir, prompts_file), tmp_path / "a", show_progress=False)
    assert calls == [(tmp_path / "a", "grid")]
    run_grid(_cfg(tiny_pair_dir, prompts_file, shard="0/2"), tmp_path / "b", show_progress=False)
    assert len(calls) == 1  # a shard holds a scattering of the grid: no picture


def test_a_second_look_at_a_finished_run_keeps_the_peak_of_the_work(
    tiny_pair_dir, prompts_file, tmp_path
):
    """env.json describes the processes that computed the points: running the same command
    on a finished folder computes nothing and leaves it (and timing.json) byte for byte; a
    resume that computes points keeps the larger of the recorded and its own peak."""
    out = tmp_path / "run"
    run_grid(_cfg(tiny_pair_dir, prompts_file), out, show_progress=False)
    env = json.loads((out / "env.json").read_text())
    env["peak_rss_bytes"], env["threads"] = 123, 99  # values no process here would record
    (out / "env.json").write_text(json.dumps(env))
    before = (out / "env.json").read_bytes(), (out / "timing.json").read_bytes()
    run_grid(_cfg(tiny_pair_dir, prompts_file), out, show_progress=False)
    assert ((out / "env.json").read_bytes(), (out / "timing.json").read_bytes()) == before

    env["peak_rss_bytes"] = 1 << 50  # larger than this process's peak: it stays
    (out / "env.json").write_text(json.dumps(env))
    lines = (out / "points.jsonl").read_text().splitlines(keepends=True)
    (out / "points.jsonl").write_text("".join(lines[:-1]))  # the last point is to compute again
    run_grid(_cfg(tiny_pair_dir, prompts_file), out, show_progress=False)
    after = json.loads((out / "env.json").read_text())
    assert after["peak_rss_bytes"] == 1 << 50
    assert after["threads"] == torch.get_num_threads()  # the computing process's own
