"""Each benchmark script runs end to end on tiny settings and writes what its docs say.

These check that the scripts work, not their figures (no timed assertions: see
docs/benchmarks.md for the measured numbers)."""

import json
import os
import shutil
import sys

import pytest
import torch
from common import REPO, run_python

pytestmark = pytest.mark.slow


def run_script(name, *args, cwd=None, env=None):
    done = run_python(
        REPO / "benchmarks" / name,
        *args,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return done


#: The speed command of docs/benchmarks.md, run here (and not again by the docs tests) so that
#: its output is checked too; the smoke budget caps it at 600 images, 1 repeat, the first batch
#: size (128).
SPEED_COMMAND = "python benchmarks/speed.py --batch-sizes 128 1024 --repeats 7 --out speed.json"


def test_speed_writes_every_variant_for_each_batch(tmp_path):
    assert SPEED_COMMAND in (REPO / "docs" / "benchmarks.md").read_text()
    run_script("speed.py", *SPEED_COMMAND.split()[2:], cwd=tmp_path, env={"PYRO_VAE_SMOKE": "1"})
    report = json.loads((tmp_path / "speed.json").read_text())
    variants = [(r["batch_size"], r["loss"], r["images"]) for r in report["rows"]]
    assert variants == [(128, "eager", 600), (128, "jit", 600), (128, "compile", 600)]
    for row in report["rows"]:
        assert 0 < row["pyro_vae_share_of_peak"]
        (pyro_s,) = row["pyro_vae_epoch_s"]
        for name in ("reference", "compiled_reference"):  # eager and torch.compile'd
            (reference_s,) = row[f"{name}_epoch_s"]
            assert row[f"paired_ratio_over_{name}_median"] == pytest.approx(pyro_s / reference_s)
            assert row[f"ratio_time_pyro_over_{name}"] == pytest.approx(pyro_s / reference_s)
    assert report["versions"]["pyro"] and report["validation"] is True


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_step_macs_match_torch_flop_counter(network):
    """The FLOPs speed.py divides by, against torch's own count of the reference's forward."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from machine import REFERENCES, step_macs_per_image
    from torch.utils.flop_counter import FlopCounterMode

    model, x = REFERENCES[network](), torch.rand(8, 784)
    with FlopCounterMode(display=False) as counter:
        model.loss(x, 8)
    assert counter.get_total_flops() == 2 * 8 * step_macs_per_image(network)


def test_evaluation_times_eager_traced_compiled_and_plain_pytorch_estimates(tmp_path):
    out = tmp_path / "evaluation.json"
    run_script("evaluation.py", "--images", "100", "--samples", "20", "--max-elements",
               "100000", "--out", str(out))  # fmt: skip
    (row,) = json.loads(out.read_text())["rows"]
    assert row["images"] == 100 and row["samples_per_image"] == 20
    assert row["chunk"] == {"images": 6, "particles": 20}  # 100000 // (784 * 20) images
    eager = row["eager"]["nll"]
    assert 300 < eager < 800  # an untrained 784-pixel Bernoulli VAE: about 544 nats
    for name in ("jit", "compile"):
        assert abs(row[name]["nll"] - eager) < 5  # the same VAE, other draws
        assert row[name]["ratio_time_over_reference"] > 0 and row[name]["warm_up_seconds"] > 0
    for name in ("reference", "compiled_reference"):  # plain PyTorch, eager and compiled
        assert row[name]["seconds"] > 0 and 300 < row[name]["nll"] < 800
        for variant in ("eager", "jit", "compile"):
            ratio = row[variant]["seconds"] / row[name]["seconds"]
            assert row[variant][f"ratio_time_over_{name}"] == pytest.approx(ratio)


def test_scaling_writes_every_sweep_and_the_plot(tmp_path):
    out, picture = tmp_path / "scaling.json", tmp_path / "scaling.png"
    run_script("scaling.py", "--dataset", "mnist5k", "--sizes", "500", "1000", "--widths", "16",
               "--latents", "2", "--width-images", "500", "--out", str(out), "--plot",
               str(picture))  # fmt: skip
    report = json.loads(out.read_text())
    assert [r["images"] for r in report["by_size"]] == [500, 1000]
    assert report["by_hidden"][0]["hidden"] == 16 and report["by_latent"][0]["latent"] == 2
    assert picture.stat().st_size > 0


def test_iwae_plate_times_both_paths_for_each_program(tmp_path):
    out = tmp_path / "iwae.json"
    run_script("iwae_plate.py", "--hidden", "16", "--latent", "2", "--steps", "2", "--repeats",
               "1", "--batch-size", "32", "--particles", "3", "--out", str(out))  # fmt: skip
    report = json.loads(out.read_text())
    assert [r["program"] for r in report["rows"]] == ["vae", "point-weights"]
    for row in report["rows"]:
        assert set(row["seconds"]) == {"plate", "repeated"}
        assert len(row["seconds"]["plate"]["all"]) == 2  # the dropped warm-up and one repeat
        assert (
            row["speedup"] == pytest.approx(row["ms_repeated"] / row["ms_plate"])
            and row["speedup"] > 0
        )


def test_quality_trains_scores_continues_a_stopped_run_and_peeks(tmp_path):
    args = ["--dataset", "mnist5k", "--configs", "vae", "--samples", "5", "--quiet",
            "--out", str(tmp_path)]  # fmt: skip
    run_script("quality.py", *args, "--epochs", "1")
    folder = tmp_path / "mnist5k"
    first = json.loads((folder / "quality.json").read_text())
    assert first[0]["epochs"] == 1 and first[0]["is_samples"] == 5
    assert first[0]["published_nll"] is None  # published numbers are for Fashion-MNIST
    stale = {f: (folder / "vae" / f).read_text() for f in ("metrics.json", "nll-K5.json")}
    run_script("quality.py", *args, "--epochs", "2")  # continues the same run
    (row,) = json.loads((folder / "quality.json").read_text())
    assert row["epochs"] == 2 and "| vae | 2 |" in (folder / "quality.md").read_text()
    # a run stopped after its checkpoint but before its metrics: scored again, not reported stale
    for name, text in stale.items():
        (folder / "vae" / name).write_text(text)
    run_script("quality.py", *args, "--epochs", "2")
    (row,) = json.loads((folder / "quality.json").read_text())
    assert row["epochs"] == 2
    config = json.loads((folder / "vae" / "config.json").read_text())
    assert (config["hidden"], config["layer"], config["latent_dim"], config["lr"]) == (
        [300, 300],
        "gated",
        40,
        5e-4,
    )
    # --peek scores the checkpoints without training. A copy of the same run under another
    # config's name has the same weights and gets the same draws: paired difference exactly 0.
    peek = ["--dataset", "mnist5k", "--samples", "5", "--out", str(tmp_path), "--peek", "30"]
    done = run_script("quality.py", *peek, "--configs", "vae", "vamp")
    assert "| vamp | no checkpoint in" in done.stdout
    shutil.copytree(folder / "vae", folder / "vamp")
    done = run_script("quality.py", *peek, "--configs", "vae", "vamp")
    report = json.loads((folder / "peek-30.json").read_text())
    assert report["first"] == "vae" and set(report["configs"]) == {"vae", "vamp"}
    vae, copy = report["configs"]["vae"], report["configs"]["vamp"]
    assert vae["epochs"] == 2 and vae["test_images"] == 30 and vae["nll"] == copy["nll"]
    assert copy["minus_first"] == 0 and "| vamp | 2 |" in done.stdout
    assert row == json.loads((folder / "quality.json").read_text())[0]  # nothing trained


def test_quality_scoring_stopped_part_way_continues_with_the_same_numbers(tmp_path):
    args = ["--dataset", "mnist5k", "--configs", "vae", "--samples", "5", "--quiet",
            "--epochs", "1", "--score-block", "400", "--out", str(tmp_path)]  # fmt: skip
    run_script("quality.py", *args)
    folder = tmp_path / "mnist5k" / "vae"
    whole = json.loads((folder / "nll-K5-images.json").read_text())
    (row,) = json.loads((tmp_path / "mnist5k" / "quality.json").read_text())
    assert len(whole["log_likelihood"]) == len(whole["kl"]) == row["test_images"] == 1000
    assert row["nll"] == pytest.approx(-sum(whole["log_likelihood"]) / 1000, abs=1e-9)
    # as if stopped after the first block, whose numbers are marked to show they are kept
    stopped = {key: value[:400] if isinstance(value, list) else value
               for key, value in whole.items()}  # fmt: skip
    stopped["log_likelihood"] = [v - 0.5 for v in stopped["log_likelihood"]]
    (folder / "nll-K5-images.json").write_text(json.dumps(stopped))
    (folder / "nll-K5.json").unlink()
    run_script("quality.py", *args, "--loss", "eager")  # continued untraced: the same draws
    resumed = json.loads((folder / "nll-K5-images.json").read_text())
    assert resumed["log_likelihood"][:400] == stopped["log_likelihood"]  # not scored again
    # the later blocks get the draws of an uninterrupted (traced) scoring
    assert resumed["log_likelihood"][400:] == pytest.approx(whole["log_likelihood"][400:], abs=1e-6)
    assert resumed["kl"] == pytest.approx(whole["kl"], abs=1e-6)
    (row,) = json.loads((tmp_path / "mnist5k" / "quality.json").read_text())
    assert row["nll"] == pytest.approx(-sum(resumed["log_likelihood"]) / 1000, abs=1e-9)
    # blocks saved with other draws are not mixed in: another seed scores every block afresh
    (folder / "nll-K5.json").unlink()
    run_script("quality.py", *args, "--seed", "1")
    reseeded = json.loads((folder / "nll-K5-images.json").read_text())
    assert reseeded["seed"] == 1 and len(reseeded["log_likelihood"]) == 1000
    assert reseeded["log_likelihood"][:400] != pytest.approx(stopped["log_likelihood"], abs=0.4)


#: The guides command of docs/benchmarks.md, run here (and not again by the docs tests); the
#: smoke budget keeps its first and last cell, 1 epoch, a 16-unit network, z of 2, 50 images.
GUIDES_COMMAND = "python benchmarks/guides.py --out bench-runs/guides --json guides.json"


def test_guides_trains_and_diagnoses_each_cell(tmp_path):
    assert GUIDES_COMMAND in (REPO / "docs" / "benchmarks.md").read_text()
    run_script("guides.py", *GUIDES_COMMAND.split()[2:], cwd=tmp_path, env={"PYRO_VAE_SMOKE": "1"})
    rows = json.loads((tmp_path / "guides.json").read_text())["rows"]
    assert [(r["guide"], r["gradient"]) for r in rows] == [
        ("diagonal", "reparam"),
        ("semi-amortized", "reparam"),
    ]
    for row in rows:
        assert row["test_log_likelihood"] >= row["test_elbo"] - 1.0
        assert 0 <= row["khat_bad_share"] <= 1 and row["seconds_per_epoch"] > 0
        config = json.loads((tmp_path / "bench-runs" / "guides" / f"{row['guide']}-reparam"
                             / "config.json").read_text())  # fmt: skip
        assert (config["epochs"], config["hidden"], config["latent_dim"]) == (1, [16], 2)


def test_networks_trains_and_estimates_each_network(tmp_path):
    out = tmp_path / "networks.json"
    run_script("networks.py", "--dataset", "mnist5k", "--epochs", "1", "--latent-dim", "2",
               "--is-samples", "200", "--num-test", "20", "--out", str(tmp_path / "runs"),
               "--json", str(out), env={"PYRO_VAE_SMOKE": "1"})  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [r["network"] for r in rows] == ["mlp", "conv"]
    # the smoke budget's MLP 784-16-2: weights 784x16 twice and 16x2 three times; biases 16
    # twice, 784 once, 2 twice
    assert rows[0]["parameters"] == 2 * 784 * 16 + 3 * 16 * 2 + 2 * 16 + 784 + 2 * 2
    for row in rows:
        assert (row["epochs"], row["test_images"], row["is_samples"]) == (1, 20, 200)
        assert row["test_log_likelihood"] >= row["test_elbo"] - 1.0
        assert 0 <= row["khat_bad_share"] <= 1 and row["seconds_per_epoch"] > 0
    # the paired difference's mean is the difference of the two means (the same images)
    assert "minus_first" not in rows[0]
    assert rows[1]["minus_first"]["mean"] == pytest.approx(
        rows[1]["test_log_likelihood"] - rows[0]["test_log_likelihood"], abs=1e-6
    )
    assert rows[1]["minus_first"]["standard_error"] > 0
