"""``pyro-vae train --labels N``: the semi-supervised VAE from the command line, its run folder,
and bad input refused in one line with nothing written."""

import itertools
import json

import pytest
import torch
from common import TINY

from pyro_vae.cli import main
from pyro_vae.core.errors import TrainingInterrupted
from pyro_vae.semi_supervised_run import _cluster_error, labelled_rows

RUN_FILES = {
    ".lock",
    "config.json",
    "labelled.json",
    "checkpoint.pt",
    "metrics.json",
    "loss.png",
    "samples.png",
    "summary.html",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi")
    assert main(["train", *TINY, "--labels", "20", "--out", str(root / "m2")]) == 0
    unsupervised = ["--labels", "0", "--label-estimator", "relaxed"]
    assert main(["train", *TINY, *unsupervised, "--out", str(root / "mix")]) == 0
    return root


def test_train_with_labels_writes_a_complete_run_folder(runs):
    folder = runs / "m2"
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    rows = json.loads((folder / "labelled.json").read_text())["rows"]
    from pyro_vae.data import load_dataset

    labels = load_dataset("mnist5k").train_labels
    assert len(set(rows)) == 20 and torch.bincount(labels[rows], minlength=10).tolist() == [2] * 10
    metrics = json.loads((folder / "metrics.json").read_text())
    test = metrics["test"]
    assert 0 <= test["classification_error"] <= 1 and test["log_likelihood"] < 0
    assert test["elbo"] <= test["log_likelihood"] + 1.0  # a bound, up to K's slack
    assert metrics["label_estimator"] == "enumerate" and metrics["labels"]["count"] == 20
    assert metrics["classifier_weight"] == pytest.approx(0.1 * 4000)  # the paper's default
    assert metrics["seconds_per_epoch"] > 0
    assert "test error of q(y | x)" in (folder / "summary.html").read_text()


def test_labels_0_is_a_mixture_scored_by_the_best_matching(runs):
    metrics = json.loads((runs / "mix" / "metrics.json").read_text())
    assert 0 <= metrics["test"]["cluster_error"] <= 0.9  # the best matching beats any other
    assert json.loads((runs / "mix" / "labelled.json").read_text())["rows"] == []


def test_the_labelled_rows_are_balanced_and_chosen_by_the_seed():
    labels = torch.arange(3).repeat(20)  # 3 classes, 20 images each
    first = labelled_rows(labels, 7, seed=0)
    assert len(first) == 7 and sorted(torch.bincount(labels[first]).tolist()) == [2, 2, 3]
    assert torch.equal(first, labelled_rows(labels, 7, seed=0))
    assert not torch.equal(first, labelled_rows(labels, 7, seed=1))
    assert len(labelled_rows(labels, 0, seed=0)) == 0


def test_the_cluster_error_is_that_of_the_best_of_all_matchings():
    generator = torch.Generator().manual_seed(0)
    clusters = torch.randint(3, (200,), generator=generator)
    labels = torch.where(torch.rand(200, generator=generator) < 0.7, (clusters + 1) % 3, clusters)
    best = min(
        (torch.tensor(p)[clusters] != labels).double().mean().item()
        for p in itertools.permutations(range(3))
    )
    assert _cluster_error(clusters, labels, 3) == pytest.approx(best)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "5"], "leaves a class with no labelled image"),
        (["--labels", "999999"], "exceeds the 4000 training images"),
        (["--labels", "-1"], "labels must be a non-negative integer"),
        (["--labels", "10", "--prior", "vamp"], "whose prior is standard-normal"),
        (["--labels", "10", "--objective", "iwae"], "--label-estimator chooses"),
        (["--labels", "10", "--label-estimator", "gumbel"], "unknown label estimator 'gumbel'"),
        (["--labels", "10", "--classifier-weight", "-1"], "classifier_weight"),
        (["--labels", "10", "--dataset", "ppca"], "needs a labelled data set"),
        (["--label-estimator", "relaxed"], "apply with --labels only"),
        (["--classifier-weight", "3"], "apply with --labels only"),
    ],
)
def test_bad_labels_are_refused_in_one_line_with_nothing_written(capsys, tmp_path, args, message):
    out = tmp_path / "run"
    extra = ["--binarization", "none", "--likelihood", "normal"] if "ppca" in args else []
    code = main(["train", *TINY, *args, *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_compare_refuses_labels_it_would_ignore(capsys, tmp_path):
    code = main(["compare", "--methods", "vae", "--labels", "10", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "compare does not take --labels yet" in err, err
    assert not (tmp_path / "c").exists()


def test_diagnose_and_resume_refuse_a_semi_supervised_run(runs, capsys):
    assert main(["diagnose", str(runs / "m2"), "--quiet"]) == 2
    assert "is a semi-supervised run" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(runs / "m2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err


def test_an_interrupted_semi_supervised_run_says_nothing_was_kept(tmp_path, capsys, monkeypatch):
    from pyro_vae import semi_supervised_run

    def interrupted_fit(*args, should_stop, **kwargs):
        raise TrainingInterrupted(1, 3, signal_number=2)

    monkeypatch.setattr(semi_supervised_run, "fit", interrupted_fit)
    code = main(["train", *TINY, "--labels", "10", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 130 and "no state was kept" in err and "--resume" not in err, err
    assert not (tmp_path / "run").exists()  # the partial folder is removed
