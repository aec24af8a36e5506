"""Run folders and checkpoints are untrusted input: every damaged one is refused in one line,
before anything is written, by ``train --resume`` and by ``diagnose``."""

import shutil

import pytest
import torch
from common import TINY

from pyro_vae.checkpoint import load_checkpoint
from pyro_vae.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def _rewrite(folder, change):
    """Apply ``change`` to the loaded checkpoint and save it as a new checkpoint.pt (the old
    one is a hard link to the tagged file, which stays as it was)."""
    data = load_checkpoint(folder / "checkpoint.pt")
    change(data)
    (folder / "checkpoint.pt").unlink()
    torch.save(data, folder / "checkpoint.pt")


def _first_param(data):
    params = data["fit"]["params"]
    return params, next(iter(params))


def _reshape(data):
    params, name = _first_param(data)
    params[name] = torch.zeros(3, 3)


def _drop_param(data):
    params, name = _first_param(data)
    del params[name]


def _float64(data):
    params, name = _first_param(data)
    params[name] = params[name].double()


def _nan(data):
    params, name = _first_param(data)
    params[name] = torch.full_like(params[name], float("nan"))


def _extra_param(data):
    data["fit"]["params"]["stowaway"] = torch.zeros(2)


def _optimizer_buffer(data):
    buffers = next(iter(data["fit"]["optimizer"]["state"].values()))
    buffers["exp_avg"] = torch.zeros(7)


def _optimizer_groups(data):
    data["fit"]["optimizer"]["param_groups"].append({"params": [999]})


def _rng(data):
    data["fit"]["rng"]["data"] = torch.zeros(5, dtype=torch.uint8)


def _history(data):
    data["fit"]["history"]["losses"].append(1.0)


def _position(data):
    data["fit"]["position"] = {"epoch": 0, "step": 10**6, "epoch_rng": None}


def _bad_config(data):
    data["config"]["latent_dim"] = "abc"


DAMAGES = {
    "a parameter of another shape": lambda f: _rewrite(f, _reshape),
    "a missing parameter": lambda f: _rewrite(f, _drop_param),
    "a parameter of another dtype": lambda f: _rewrite(f, _float64),
    "a NaN parameter": lambda f: _rewrite(f, _nan),
    "an extra parameter": lambda f: _rewrite(f, _extra_param),
    "an optimizer buffer of another shape": lambda f: _rewrite(f, _optimizer_buffer),
    "another number of optimizer groups": lambda f: _rewrite(f, _optimizer_groups),
    "a generator state of another size": lambda f: _rewrite(f, _rng),
    "history lists of different lengths": lambda f: _rewrite(f, _history),
    "a mid-epoch position out of range": lambda f: _rewrite(f, _position),
    "no fit state": lambda f: _rewrite(f, lambda d: d.pop("fit")),
    "no config": lambda f: _rewrite(f, lambda d: d.pop("config")),
    "a config with a bad value": lambda f: _rewrite(f, _bad_config),
    "a text file": lambda f: _replace_with_text(f / "checkpoint.pt"),
    "a symlink to a text file": lambda f: _link_to_text(f / "checkpoint.pt"),
    "pickled code": lambda f: _rewrite(f, lambda d: d.update(x=Payload())),
}
#: Damage to what only resuming reads; evaluating (diagnose) does not need these parts.
RESUME_ONLY = {
    "an optimizer buffer of another shape",
    "another number of optimizer groups",
    "a generator state of another size",
    "a mid-epoch position out of range",
}


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def _replace_with_text(path):
    path.unlink()
    path.write_text("not a checkpoint\n")


def _link_to_text(path):
    target = path.parent.parent / "elsewhere.txt"
    target.write_text("not a checkpoint\n")
    path.unlink()
    path.symlink_to(target)


def _snapshot(root):
    """Every file and link under ``root`` with its bytes (or link target)."""
    return {
        str(p.relative_to(root)): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def _one_line_refusal(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae: error: "), captured.err
    assert "weights_only" not in lines[0] and "Warning" not in lines[0]
    assert "pwned" not in captured.out
    return lines[0]


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_checkpoint_is_refused_before_anything_is_written(
    damage, trained, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    DAMAGES[damage](run)
    before = _snapshot(tmp_path)
    _one_line_refusal(capsys, ["train", "--resume", "--epochs", "2", "--quiet", "--out", str(run)])
    assert _snapshot(tmp_path) == before
    if damage in RESUME_ONLY:
        return
    _one_line_refusal(capsys, ["diagnose", str(run), "--out", str(tmp_path / "d"), "--quiet"])
    assert _snapshot(tmp_path) == before


def test_a_config_json_nested_100000_deep_is_refused(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    before = _snapshot(tmp_path)
    line = _one_line_refusal(capsys, ["train", "--resume", "--quiet", "--out", str(run)])
    assert "nested too deeply" in line
    assert _snapshot(tmp_path) == before


def test_the_refusals_name_the_difference(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _rewrite(run, _reshape)
    line = _one_line_refusal(capsys, ["train", "--resume", "--quiet", "--out", str(run)])
    assert "has shape (3, 3), the model's has (16, 784)" in line
    assert str(run / "checkpoint.pt") in line


def test_resume_replaces_links_in_the_run_folder_and_never_writes_through_them(
    trained, tmp_path, capsys
):
    run, outside = tmp_path / "run", tmp_path / "outside"
    shutil.copytree(trained, run)
    outside.mkdir()
    for path in sorted(run.iterdir()):
        if path.name == ".lock":
            continue
        target = outside / path.name
        shutil.copyfile(path, target)
        path.unlink()
        path.symlink_to(target)
    before = _snapshot(outside)
    assert main(["train", "--resume", "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    assert _snapshot(outside) == before
    written = {"config.json", "metrics.json", "checkpoint.pt", "loss.png", "samples.png"}
    for name in written:
        assert (run / name).is_file() and not (run / name).is_symlink(), name
    assert not list(run.glob(".*.tmp*")) and not list(run.glob(".*.link"))


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(trained, tmp_path, capsys):
    run, target = tmp_path / "run", tmp_path / "target"
    shutil.copytree(trained, run)
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(target)
    line = _one_line_refusal(capsys, ["train", "--resume", "--quiet", "--out", str(run)])
    assert ".lock" in line
    assert not target.exists()
