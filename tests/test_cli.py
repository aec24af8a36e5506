"""The ``pyro-vae`` command line: a real run, resume, and every bad input refused cleanly."""

import json
import os
from pathlib import Path

import pytest
import torch
from common import TINY, run_cli

from pyro_vae.checkpoint import load_checkpoint
from pyro_vae.cli import main
from pyro_vae.runs import load_run

RUN_FILES = {
    ".lock",
    "config.json",
    "metrics.json",
    "checkpoint.pt",
    "checkpoint-e0001.pt",
    "reconstructions.png",
    "samples.png",
    "latent.png",
    "loss.png",
    "summary.html",
}


@pytest.mark.slow
def test_train_writes_a_complete_run_folder_and_resumes(tmp_path):
    out = tmp_path / "run"
    done = run_cli("train", *TINY, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "test ELBO" in done.stdout and "K=5" in done.stdout
    assert {p.name for p in out.iterdir()} == RUN_FILES
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist5k" and metrics["binarization"]["mode"] == "dynamic"
    assert metrics["test"]["is_samples"] == 5 and metrics["epochs"] == 1
    assert metrics["test"]["log_likelihood"] >= metrics["test"]["elbo"] - 1.0
    assert metrics["units"] == "nats per datapoint"
    for key in ("train", "evaluation"):
        assert metrics["wall_time_s"][key] > 0
    assert json.loads((out / "config.json").read_text())["hidden"] == [16]
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert set(checkpoint["fit"]) == {"params", "optimizer", "rng", "history"}

    resumed = run_cli(
        "train", "--resume", "--out", str(out), "--epochs", "2", "--quiet", module=False
    )
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["train"]["loss_per_epoch"]) == 2


def test_ppca_run_on_the_python_api(tmp_path):
    from pyro_vae import TrainConfig, train

    config = TrainConfig(
        dataset="ppca",
        binarization="none",
        likelihood="normal",
        hidden=(),
        latent_dim=2,
        epochs=2,
        batch_size=200,
        is_samples=3,
        lr=0.01,
    )
    metrics = train(config, tmp_path / "p", progress=False)
    assert metrics["test"]["is_samples"] == 3
    # two epochs: both tagged checkpoints are kept (keep_checkpoints=3)
    assert {p.name for p in (tmp_path / "p").iterdir()} == RUN_FILES - {
        "reconstructions.png",
        "samples.png",
    } | {"checkpoint-e0002.pt"}


def _refused(capsys, tmp_path, *args):
    code = main(["train", *TINY, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "cifar"], "fashion-mnist, mnist, mnist5k, ppca"),
        (["--likelihood", "poisson"], "continuous-bernoulli, discretized-logistic, laplace"),
        (["--objective", "kl"], "elbo, elbo-analytic-kl"),
        (["--binarization", "maybe"], "dynamic, none, threshold"),
        (["--prior", "flat"], "standard-normal"),
        (["--lr", "-1"], "lr must be a positive"),
        (["--lr", "abc"], "--lr takes a number"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--latent-dim", "2.5"], "--latent-dim takes an integer"),
        (["--hidden", "-3"], "hidden must be a positive integer"),
        (["--particles", "0"], "particles must be a positive integer"),
        (["--batch-size", "4001"], "batch_size 4001 exceeds the 4000 training images"),
        (["--binarization", "none"], "binarize them .* or use --likelihood continuous-bernoulli"),
        (["--device", "tpu"], "device must be cpu or cuda"),
        (["--data-dir", "/no/such/folder"], "does not exist"),
        (["--dataset", "ppca", "--likelihood", "normal"], "binarization 'dynamic' needs data in"),
        (
            ["--dataset", "ppca", "--binarization", "none", "--likelihood", "normal"]
            + ["--prior", "class-conditional"],
            "needs labelled data",
        ),
        (["--warmup-epochs", "-1"], "warmup_epochs must be a non-negative integer"),
        (["--beta", "nan"], "beta must be a positive finite number"),
        (["--beta", "0"], "beta must be a positive finite number"),
        (["--weight-prior", "hierarchical"], "no maximum under a point estimate"),
        (["--clip-grad-norm", "-1"], "clip_grad_norm must be a non-negative finite number"),
        (["--on-divergence", "retry"], "on_divergence must be one of stop, rollback"),
        (["--keep-checkpoints", "-2"], "keep_checkpoints must be a non-negative integer"),
        (["--prior-opt", "components"], "expected KEY=VALUE"),
        (["--prior", "mog", "--prior-opt", "colours=3"], "colours"),
        (["--layer", "glu"], "unknown layer 'glu'; choose one of: gated, relu"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_refused_in_one_line(tmp_path, args, message):
    """Each in a real ``pyro-vae`` process: exit 2, one line, no traceback, nothing written."""
    out = tmp_path / "never"
    done = run_cli("train", *TINY, *args, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae"), done.stderr
    assert "Traceback" not in done.stderr and not done.stdout
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(capsys, tmp_path):
    assert "no CUDA GPU" in _refused(
        capsys, tmp_path, "--device", "cuda", "--out", str(tmp_path / "x")
    )


def test_output_folder_problems_are_refused(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    assert "is a file" in _refused(capsys, tmp_path, "--out", str(a_file))
    assert a_file.read_text() == "keep me"
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert "already holds files" in _refused(capsys, tmp_path, "--out", str(full))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json does not exist" in _refused(
        capsys, tmp_path, "--resume", "--out", str(empty)
    )
    assert "--resume needs --out" in _refused(capsys, tmp_path, "--resume")


def test_an_output_folder_that_cannot_be_made_is_refused(capsys, tmp_path, monkeypatch):
    # Where the write check passes but mkdir fails (root under /proc, a read-only mount).
    out = tmp_path / "run"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == out:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    line = _refused(capsys, tmp_path, "--out", str(out))
    assert line == f"pyro-vae: error: cannot create output folder {str(out)!r}: Permission denied"


def test_resume_refuses_changed_settings_and_unsafe_checkpoints(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    line = _refused(capsys, tmp_path, "--resume", "--out", str(out), "--lr", "0.5")
    assert "lr" in line and "only epochs" in line

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save(
        {"format": "pyro-vae/checkpoint", "version": 1, "x": Payload()}, out / "checkpoint.pt"
    )
    line = _refused(capsys, tmp_path, "--resume", "--out", str(out))
    assert "refusing to load" in line
    assert "pwned" not in capsys.readouterr().out


def test_argparse_errors_are_one_line(tmp_path):
    done = run_cli("train", "--no-such-option")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "unrecognized" in done.stderr


def test_prior_and_likelihood_options_reach_the_model(tmp_path):
    out = tmp_path / "opts"
    code = main(
        [
            "train",
            *TINY,
            "--binarization",
            "none",
            "--likelihood",
            "laplace",
            "--likelihood-opt",
            "scale=shared",
            "init_scale=0.5",
            "--prior",
            "mog",
            "--prior-opt",
            "components=3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["prior_options"] == {"components": 3}
    assert config["likelihood_options"] == {"scale": "shared", "init_scale": 0.5}
    params = load_checkpoint(out / "checkpoint.pt")["fit"]["params"]
    assert params["prior.logits"].shape == (3,)
    assert params["likelihood.scale_unconstrained"].shape == ()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prior"]["kl_estimator"] == "monte-carlo"
    assert metrics["likelihood"] == {"name": "laplace", "options": config["likelihood_options"]}


def test_gated_layers_reach_the_model_and_the_reloaded_run(tmp_path):
    out = tmp_path / "gated"
    assert main(["train", *TINY, "--layer", "gated", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["layer"] == "gated"
    params = load_checkpoint(out / "checkpoint.pt")["fit"]["params"]
    assert "encoder.body.0.linear.weight" in params
    run = load_run(out)
    assert run.config.layer == "gated"
    assert torch.isfinite(run.vae.decoder(torch.zeros(2, run.config.latent_dim))).all()


def test_bad_option_pairs_are_refused(capsys, tmp_path):
    line = _refused(capsys, tmp_path, "--prior-opt", "components", "--out", str(tmp_path / "a"))
    assert "expected KEY=VALUE" in line
    line = _refused(
        capsys,
        tmp_path,
        "--likelihood-opt",
        "scale=wide",
        "--binarization",
        "none",
        "--likelihood",
        "normal",
        "--out",
        str(tmp_path / "b"),
    )
    assert "scale must be one of" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_weight_prior_gives_a_map_decoder(tmp_path):
    out = tmp_path / "map"
    args = ["train", *TINY, "--weight-prior", "normal", "--weight-prior-opt", "scale=0.5"]
    assert main([*args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weight_prior"] == {
        "name": "normal",
        "options": {"scale": 0.5},
        "decoder_estimate": "max ELBO + log p(w)",
    }
    params = load_checkpoint(out / "checkpoint.pt")["fit"]["params"]
    # The AutoDelta holds the decoder's weights; the VAE's decoder has none of its own.
    assert any(k.startswith("guides.0.decoder.out.weight") for k in params)
    assert not any(k.startswith("vae.decoder.") for k in params)
    assert torch.isfinite(torch.tensor(metrics["test"]["log_likelihood"]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_folder_is_refused(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "is not writable" in _refused(capsys, tmp_path, "--out", str(locked / "run"))
        assert not (locked / "run").exists()
    finally:
        locked.chmod(0o700)


def test_version(capsys):
    from pyro_vae import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pyro-vae {__version__}"


def test_an_unexpected_error_is_one_line_and_a_traceback_log(capsys, monkeypatch):
    import pyro_vae.cli as cli

    def broken(args):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(cli, "_train", broken)
    assert main(["train", "--quiet"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "internal error: RuntimeError: something nobody foresaw (" in lines[0]
    log = Path(lines[0].split("full traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "something nobody foresaw" in log.read_text()
    log.unlink()


@pytest.mark.parametrize("command", [["train"], ["compare"], ["diagnose", "runs/none"]])
def test_an_empty_out_is_refused(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--out", "", "--quiet"]) == 2
    assert "--out must name a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written, no default folder made


def test_an_interrupt_names_only_what_was_saved(capsys, monkeypatch, tmp_path):
    import pyro_vae.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train", interrupted)
    monkeypatch.setattr(cli, "_diagnose", interrupted)
    assert main(["train", "--out", str(tmp_path / "new"), "--quiet"]) == 130
    assert "no epoch had finished, so nothing was kept" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "checkpoint.pt").write_bytes(b"")
    assert main(["train", "--out", str(tmp_path / "old"), "--quiet"]) == 130
    assert f"is in {tmp_path / 'old' / 'checkpoint.pt'} (continue" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "old"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "diagnose keeps no partial results" in err and "--resume" not in err


def test_binarization_has_one_name_and_old_spellings_still_read():
    from pyro_vae.cli import build_parser
    from pyro_vae.config import TrainConfig

    # a config.json written before the rename, and the old flag
    assert TrainConfig.from_dict({"binarize": "threshold"}).binarization == "threshold"
    changed = TrainConfig.from_dict({"binarize": "threshold", "binarization": "none"})
    assert changed.binarization == "none"
    for flag in ("--binarization", "--binarize"):
        args = build_parser().parse_args(["train", flag, "none"])
        assert args.binarization == "none"
