"""``pyro-vae diagnose`` on real run folders: every output, and bad input refused cleanly."""

import json
import shutil

import pytest
import torch
from common import QUICK_DIAGNOSE as QUICK
from common import TINY

from pyro_vae import arviz_bridge
from pyro_vae.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.cli import main
from pyro_vae.runs import load_run

OUTPUTS = {
    ".lock",
    "report.md",
    "report.html",
    "diagnostics.json",
    "inference_data.nc",
    "khat.png",
    "worst_images.png",
    "collapse.png",
    "aggregate.png",
    "nuts_vs_vi.png",
    "sbc_ecdf.png",
    "ppc.png",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny mnist5k runs (seeds 0 and 1) and a tiny pPCA run."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (
        ("a", []),
        ("b", ["--seed", "1"]),
        ("p", ["--dataset", "ppca", "--binarization", "none", "--likelihood", "normal"]),
    ):
        assert main(["train", *TINY, *extra, "--out", str(root / name)]) == 0
    return root


def test_load_run_gives_back_the_trained_model(runs):
    run = load_run(runs / "a")
    state = load_checkpoint(runs / "a" / "checkpoint.pt")["fit"]["params"]
    for name, value in run.vae.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert run.epochs == 1 and run.config.hidden == (16,)
    assert len(run.test_x) == 1000 and set(run.test_x.unique().tolist()) <= {0.0, 1.0}


def test_diagnose_writes_every_output(runs, capsys):
    out = runs / "a-diag"
    code = main(
        ["diagnose", str(runs / "a"), *QUICK, "--out", str(out), "--against", str(runs / "b")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "k-hat > 0.7" in captured.out and "active units" in captured.out
    assert {p.name for p in out.iterdir()} == OUTPUTS
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["importance"]["is_samples"] == 200
    assert len(report["importance"]["per_image"]["khat"]) == 30
    assert sum(report["importance"]["khat_shares"].values()) == pytest.approx(1.0)
    assert report["collapse"]["latent_dim"] == 2
    assert report["gaps"]["images"] == 5 and report["gaps"]["q_star_steps"] == 20
    assert report["nuts"]["rhat_max"] > 0 and len(report["nuts"]["summary"]["z_vi"]) == 4
    assert {r["fit"] for r in report["elpd"]} == {"a", "b"}
    assert min(r["elpd_diff"] for r in report["elpd"]) == 0.0
    idata = arviz_bridge.load(out / "inference_data.nc")
    assert set(arviz_bridge.group_names(idata)) == {
        "posterior",
        "log_likelihood",
        "posterior_predictive",
        "observed_data",
        "sbc_ranks",
    }
    assert idata.posterior_predictive["intensity"].shape == (1, 10, 30)
    assert idata.observed_data["pixel_mean"].shape == (784,)
    assert idata["sbc_ranks"]["rank"].shape == (4, 40)
    assert 0 <= int(idata["sbc_ranks"]["rank"].max()) <= 19
    assert report["calibration"]["simulations"] == 40 and len(report["calibration"]["rows"]) == 4
    assert report["coverage"]["images"] == report["nuts"]["images"]
    assert len(report["coverage"]["q"]["per_image"][0]) == 2  # 50 % interval, per NUTS image
    assert len(report["predictive"]["intensity"]["p_values"]) == 30
    assert idata.posterior["z_nuts"].shape == (2, 20, 2, 2)
    assert set(idata.log_likelihood.data_vars) == {"a", "b"}
    assert idata.log_likelihood["a"].shape == (1, 1, 30)
    text = (out / "report.md").read_text()
    for heading in (
        "Pareto k-hat",
        "Posterior collapse",
        "Aggregate posterior",
        "Inference gaps",
        "q(z|x) against NUTS",
        "Coverage of q's intervals",
        "Is q calibrated?",
        "Posterior predictive checks",
        "Model comparison",
    ):
        assert heading in text
    for picture in {p for p in OUTPUTS if p.endswith(".png")}:
        assert f"]({picture})" in text


def test_a_run_against_itself_ties_exactly(runs, tmp_path):
    out = tmp_path / "self"
    args = ["--num-test", "20", "--is-samples", "200", "--gap-images", "0", "--nuts-images", "0"]
    assert (
        main(
            [
                "diagnose",
                str(runs / "a"),
                *args,
                "--against",
                str(runs / "a"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    elpd = json.loads((out / "diagnostics.json").read_text())["elpd"]
    assert [r["fit"] for r in elpd] == ["a", "a-2"]
    # the same model scored with the same random numbers: ELPD difference 0, SE 0
    assert elpd[1]["elpd_diff"] == 0.0 and elpd[1]["dse"] == 0.0


def test_diagnose_defaults_to_the_run_folder_and_can_skip_stages(runs, tmp_path):
    run = tmp_path / "p"
    shutil.copytree(runs / "p", run)
    args = ["--num-test", "20", "--is-samples", "200", "--gap-images", "0", "--nuts-images", "0"]
    skip = ["--sbc-simulations", "0", "--ppc-replicates", "0"]
    assert main(["diagnose", str(run), *args, *skip, "--quiet"]) == 0
    names = {p.name for p in (run / "diagnostics").iterdir()}
    # pPCA has no images, and NUTS, gaps, calibration and predictive checks were skipped.
    assert names == OUTPUTS - {"worst_images.png", "nuts_vs_vi.png", "sbc_ecdf.png", "ppc.png"}
    report = json.loads((run / "diagnostics" / "diagnostics.json").read_text())
    assert "gaps" not in report and "nuts" not in report
    assert "calibration" not in report and "predictive" not in report
    assert report["coverage"] == {"skipped": "needs the nuts section's draws (nuts_images > 0)"}
    back = arviz_bridge.load(run / "diagnostics" / "inference_data.nc")
    assert arviz_bridge.group_names(back) == ["log_likelihood"]


def test_a_refused_section_exits_2_with_the_rest_written(runs, tmp_path, capsys):
    out = tmp_path / "refused"
    args = ["--num-test", "20", "--is-samples", "200", "--gap-images", "0", "--nuts-images", "0"]
    code = main(
        ["diagnose", str(runs / "p"), *args, "--sbc-draws", "5", "--out", str(out), "--quiet"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "calibration: sbc_draws must be at least 9" in err[0]
    report = json.loads((out / "diagnostics.json").read_text())
    assert "calibration" in report["refused"] and "predictive" in report
    text = (out / "report.md").read_text()
    assert "## Sections not run" in text and "Posterior predictive checks" in text


def _refused(capsys, *args):
    code = main(["diagnose", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae"), err
    return lines[0]


def _broken_copy(runs, tmp_path, change):
    run = tmp_path / "broken"
    shutil.copytree(runs / "a", run)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    change(checkpoint)
    save_checkpoint(run / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k != "format"})
    return run


def test_bad_run_folders_are_refused(runs, tmp_path, capsys):
    out = ["--out", str(tmp_path / "never")]
    assert "does not exist" in _refused(capsys, str(tmp_path / "missing"), *out)
    (tmp_path / "empty").mkdir()
    assert "no checkpoint" in _refused(capsys, str(tmp_path / "empty"), *out)

    def future_setting(checkpoint):
        checkpoint["config"]["new_setting"] = 1

    run = _broken_copy(runs, tmp_path, future_setting)
    assert "holds a config this pyro-vae cannot read" in _refused(capsys, str(run), *out)
    shutil.rmtree(run)

    def other_architecture(checkpoint):
        checkpoint["config"]["hidden"] = [32]

    run = _broken_copy(runs, tmp_path, other_architecture)
    assert "contradicts the run's checkpoint (hidden)" in _refused(capsys, str(run), *out)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "hidden": [32]}))
    assert "does not fit this run: parameter" in _refused(capsys, str(run), *out)
    shutil.rmtree(run)

    def future_version(checkpoint):
        checkpoint["version"] = 99

    run = tmp_path / "v99"
    shutil.copytree(runs / "a", run)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    checkpoint["version"] = 99
    torch.save(checkpoint, run / "checkpoint.pt")
    assert "checkpoint version 99" in _refused(capsys, str(run), *out)
    assert not (tmp_path / "never").exists()


def test_bad_options_are_refused(runs, tmp_path, capsys):
    run = str(runs / "a")
    out = tmp_path / "never"
    for args, message in (
        (["--nuts-chains", "1"], "at least 2"),
        (["--is-samples", "0"], "is_samples must be a positive integer"),
        (["--is-samples", "199"], "is_samples must be at least 200"),
        (["--gap-images", "-1"], "gap_images must be a non-negative integer"),
        (["--device", "tpu"], "device must be cpu or cuda"),
        (["--against", str(runs / "p")], "cannot compare"),
    ):
        assert message in _refused(capsys, run, *args, "--out", str(out))
    assert "--num-test takes an integer" in _refused(capsys, run, "--num-test", "many")
    assert not out.exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    line = _refused(capsys, run, "--out", str(full))
    assert "already holds files; choose a new --out" in line and "--resume" not in line
    assert (full / "mine.txt").read_text() == "keep"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_run_on_a_machine_without_one_says_so(capsys, runs, tmp_path):
    run = tmp_path / "gpu-run"
    shutil.copytree(runs / "a", run)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    checkpoint["config"]["device"] = "cuda"
    save_checkpoint(run / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k != "format"})
    line = _refused(capsys, str(run), "--out", str(tmp_path / "d"))
    assert "was trained on cuda, and no CUDA GPU is available here" in line
    assert "--device cpu" in line and "incompatible" not in line
