"""``pyro-vae compare``: a tiny grid writes every output; bad grids are refused before work."""

import csv
import json
import re

import pytest
from common import run_cli

from pyro_vae.cli import main
from pyro_vae.compare import all_methods, preset_config
from pyro_vae.core.errors import ConfigError

#: A grid of seconds: every method, two priors, two seeds, tiny networks.
TINY_COMPARE = [
    "--preset",
    "quick",
    "--epochs",
    "1",
    "--hidden",
    "8",
    "--latent-dim",
    "2",
    "--is-samples",
    "4",
    "--num-test",
    "20",
    "--proposal-epochs",
    "1",
    "--batch-size",
    "500",
    "--quiet",
]
#: Small enough NUTS and IWAE settings (given in two --method-opt flags: they add up).
TINY_METHOD_OPTIONS = [
    "--method-opt",
    "nuts-latent.images=1",
    "nuts-latent.draws=10",
    "--method-opt",
    "nuts-latent.warmup=10",
    "iwae.particles=3",
]
OUTPUTS = {
    ".lock",
    "config.json",
    "results.md",
    "results.csv",
    "results.json",
    "samples.png",
    "reconstructions.png",
    "loss.png",
    "nll.png",
    "report.html",
}


@pytest.mark.slow
def test_compare_writes_every_output(tmp_path):
    out = tmp_path / "cmp"
    done = run_cli(
        "compare",
        *TINY_COMPARE,
        *TINY_METHOD_OPTIONS,
        "--priors",
        "standard-normal",
        "laplace",
        "--seeds",
        "0",
        "1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == OUTPUTS
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert len(rows) == len(all_methods()) * 2 * 2
    assert {(r["method"], r["prior"], r["seed"]) for r in rows} == {
        (m, p, s) for m in all_methods() for p in ("standard-normal", "laplace") for s in (0, 1)
    }
    for row in rows:
        if row["method"] == "nuts-latent":
            assert row["images"] == 1 and row["draws"] == 10 and row["rhat_max"] > 0
            continue
        assert row["is_samples"] == 4 and row["epochs"] == 1
        assert row["test_nll"] > 0 and row["wall_time_s"] > 0
        assert abs(row["reconstruction"] - row["kl"] - row["test_elbo"]) < 1e-6
        assert 0 <= row["active_units"] <= 2
        assert row["elpd_diff"] >= 0 and row["elpd_dse"] >= 0
        assert "khat_bad" not in row  # K = 4 is too few draws for k-hat
    for seed in (0, 1):
        assert min(r["elpd_diff"] for r in rows if r["seed"] == seed and "elpd" in r) == 0.0
    iwae = next(r for r in rows if r["method"] == "iwae")
    assert iwae["particles"] == 3
    with open(out / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    report = (out / "results.md").read_text()
    # One table line per (method, prior), mean ± sd over the two seeds.
    table = [line for line in report.splitlines() if re.match(r"\| (vae|iwae|mle|map|bayes)", line)]
    assert len(table) == (len(all_methods()) - 1) * 2
    assert all("±" in line for line in table)
    assert "K = 4" in report and "encoder fitted afterwards for 1 epochs" in report
    assert "NUTS over z" in report and "Model comparison: ELPD" in report
    config = json.loads((out / "config.json").read_text())
    assert config["base"]["epochs"] == 1 and config["seeds"] == [0, 1]


def _refused(capsys, *args):
    code = main(["compare", *TINY_COMPARE, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "vae", "map"], "unknown method 'map'; choose one of: bayes-decoder"),
        (["--methods", "map-pairs", "--particles", "4"], "map-pairs is a point estimate"),
        (["--methods", "vae", "vae"], "lists a name twice"),
        (["--priors", "gauss"], "unknown prior 'gauss'"),
        (["--methods", "vae", "--method-opt", "iwae.particles=3"], "methods not compared: iwae"),
        (["--methods", "vae", "--method-opt", "particles=3"], "METHOD.KEY=VALUE"),
        (["--methods", "map-pairs", "--method-opt", "map-pairs.particles=3"], "does not take"),
        (["--methods", "mle-pairs", "--weight-prior", "normal"], "its weight prior is flat"),
        (["--methods", "vae", "--weight-prior", "wide"], "unknown weight prior 'wide'"),
        (
            ["--methods", "vae", "--priors", "mog", "--prior-opt", "mog.df=3"],
            "'mog' does not take df",
        ),
        (["--seeds", "0", "0"], "seeds must be distinct"),
        (["--num-test", "0"], "num_test must be a positive integer"),
        (["--preset", "huge"], "invalid choice: 'huge'"),
    ],
)
def test_bad_grids_are_refused_before_any_work(capsys, tmp_path, args, message):
    out = tmp_path / "never"
    line = _refused(capsys, *args, "--out", str(out))
    assert message in line, line
    assert not out.exists()


def test_presets_fill_what_is_not_given():
    quick = preset_config("quick", base={"epochs": 2}, methods=("vae", "nuts-latent"))
    assert quick.base.epochs == 2 and quick.base.hidden == (200,)
    assert quick.method_options == {"nuts-latent": {"images": 2, "draws": 60, "warmup": 60}}
    assert preset_config("default").base.epochs == 20
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("fast")
