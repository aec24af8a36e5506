"""Run folders and checkpoints are untrusted input: every damaged one is refused in one line,
before anything is written, by ``train --resume`` and by ``diagnose``."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch
from common import TINY, write_npz

from pyro_vae.checkpoint import load_checkpoint
from pyro_vae.cli import main
from pyro_vae.runs import load_run


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
    "a symlink to a system file": lambda f: _link_to_system_file(f / "checkpoint.pt"),
    "a FIFO": lambda f: _fifo(f / "checkpoint.pt"),
    "a symlink to a device": lambda f: _link_to_device(f / "checkpoint.pt"),
    "a zip archive that is not a checkpoint": lambda f: _zip_not_checkpoint(f / "checkpoint.pt"),
    "a FIFO as config.json": lambda f: _fifo(f / "config.json"),
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


def _link_to_system_file(path):
    """A link to a file like /etc/passwd: text with colons, read by torch as a pickle."""
    target = path.parent.parent / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    path.unlink()
    path.symlink_to(target)


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _link_to_device(path):
    path.unlink()
    path.symlink_to("/dev/zero")


def _zip_not_checkpoint(path):
    path.unlink()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


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


# ----------------------------------------------------------------- a run on other data


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("npz_run")
    data = write_npz(root / "mine.npz")
    out = root / "run"
    assert (
        main(["train", "--dataset", str(data), *TINY, "--batch-size", "20", "--out", str(out)]) == 0
    )
    return root


def _changed_copy(npz_run, tmp_path, change):
    """A copy of the run and its data file (the run folder names the file by path: the copy
    keeps pointing at a file in ``tmp_path``), the data then changed by ``change``."""
    run = tmp_path / "run"
    shutil.copytree(npz_run / "run", run)
    data = tmp_path / "mine.npz"
    arrays = dict(np.load(npz_run / "mine.npz"))
    np.savez(data, **change(arrays))
    for name in ("config.json",):
        config = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({**config, "dataset": str(data)}))
    for path in (run / "checkpoint.pt", *run.glob("checkpoint-*.pt")):
        checkpoint = load_checkpoint(path)
        checkpoint["config"]["dataset"] = str(data)
        path.unlink()
        torch.save(checkpoint, path)
    return run, data


def _one_pixel(arrays):
    arrays["train"] = arrays["train"].copy()
    arrays["train"][0, 0, 0, 0] ^= 1
    return arrays


def _no_labels(arrays):
    return {k: v for k, v in arrays.items() if not k.endswith("labels")}


DIAGNOSE_BUDGET = [
    "--num-test",
    "5",
    "--is-samples",
    "200",
    "--gap-images",
    "0",
    "--nuts-images",
    "0",
]


@pytest.mark.parametrize("change", [_one_pixel, _no_labels], ids=["one pixel", "labels gone"])
def test_a_run_whose_data_changed_is_refused_naming_both_fingerprints(
    change, npz_run, tmp_path, capsys
):
    run, data = _changed_copy(npz_run, tmp_path, change)
    before = _snapshot(tmp_path)
    recorded = json.loads((npz_run / "run" / "metrics.json").read_text())["data"]["content_sha256"]
    resume = ["train", "--resume", "--epochs", "2", "--quiet", "--out", str(run)]
    line = _one_line_refusal(capsys, resume)
    assert f"SHA-256 of its values then {recorded}, now " in line and "--allow-changed-data" in line
    now = line.split(", now ")[1][:64]
    assert len(now) == 64 and now != recorded
    diagnose = ["diagnose", str(run), "--out", str(tmp_path / "d"), "--quiet", *DIAGNOSE_BUDGET]
    assert f"then {recorded}, now {now}" in _one_line_refusal(capsys, diagnose)
    assert _snapshot(tmp_path) == before
    if change is _no_labels:
        return
    assert main([*resume, "--allow-changed-data"]) == 0
    assert "going on, as --allow-changed-data asks" in capsys.readouterr().err
    assert main(["train", "--resume", "--epochs", "3", "--quiet", "--out", str(run)]) == 0


def test_unchanged_data_resumes_and_diagnoses_without_a_word(npz_run, tmp_path, capsys):
    run, _ = _changed_copy(npz_run, tmp_path, lambda arrays: arrays)
    assert (
        main(["diagnose", str(run), "--out", str(tmp_path / "d"), "--quiet", *DIAGNOSE_BUDGET]) == 0
    )
    assert main(["train", "--resume", "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    assert "changed" not in capsys.readouterr().err


def test_allow_changed_data_without_resume_is_refused(tmp_path, capsys):
    line = _one_line_refusal(
        capsys, ["train", *TINY, "--allow-changed-data", "--out", str(tmp_path / "r")]
    )
    assert "--allow-changed-data applies to --resume only" in line


# ----------------------------------------------------------------- messages that name the cause


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_diagnose_on_a_missing_device_blames_the_device(trained, tmp_path, capsys):
    line = _one_line_refusal(
        capsys, ["diagnose", str(trained), "--device", "cuda", "--out", str(tmp_path / "d")]
    )
    assert "device 'cuda' asked for, but no CUDA GPU is available here" in line
    assert "config" not in line and not (tmp_path / "d").exists()


@pytest.mark.parametrize("setting, value", [("latent_dim", 3), ("prior", "mog"), ("seed", 5)])
def test_diagnose_refuses_a_config_json_that_contradicts_its_checkpoint(
    setting, value, trained, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, setting: value}))
    before = _snapshot(tmp_path)
    line = _one_line_refusal(
        capsys, ["diagnose", str(run), "--out", str(tmp_path / "d"), "--quiet"]
    )
    assert f"contradicts the run's checkpoint ({setting})" in line
    assert _snapshot(tmp_path) == before


def test_diagnose_accepts_a_config_json_a_resume_may_have_changed(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 7, "is_samples": 9}))
    load_run(run)  # epochs and is_samples are what a resumed run rewrites first
