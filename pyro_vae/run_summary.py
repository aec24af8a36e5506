"""The summary page ``train`` writes beside the run (``summary.html``): the scores, the settings
and the pictures of one run, from what ``metrics.json`` and ``config.json`` hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .html_page import write_page

#: The pictures of a run folder, with what each shows.
PICTURE_TITLES = {
    "loss.png": "Training loss (negative ELBO) per epoch, and the test ELBO",
    "latent.png": "The test images' posterior means in latent space, coloured by label",
    "reconstructions.png": "Test images (odd rows) and their reconstructions (even rows)",
    "samples.png": "Images drawn from the model: z ~ p(z) (and, with labels, one row per "
    "class y), then the decoder's mean",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list | tuple):
        return f"`{value}`" if value else "—"
    return "—" if value is None else str(value)


def _scores(metrics: dict[str, Any]) -> list[str]:
    test, train = metrics["test"], metrics["train"]
    rows = {  # what a run has of these (the semi-supervised VAE: no recon./KL split)
        "ELBO on the test images": test.get("elbo"),
        f"log p(x) on the test images (K = {test['is_samples']})": test.get("log_likelihood"),
        "recon. term of the test ELBO": test.get("reconstruction"),
        "KL term of the test ELBO": test.get("kl"),
        "ELBO on the training images": train.get("elbo"),
        "bits per dimension": test.get("bits_per_dim"),
        "test error of q(y | x)": test.get("classification_error"),
        "test error of the clusters, best matched to the classes": test.get("cluster_error"),
    }
    lines = ["## Scores", "", "| quantity | value |", "|---|---:|"]
    lines += [  # a bar inside a cell is escaped: it would end the cell
        f"| {name.replace('|', chr(92) + '|')} | {_fmt(value)} |"
        for name, value in rows.items()
        if value is not None
    ]
    seconds = metrics["wall_time_s"]
    return lines + [
        "",
        f"In {metrics['units']}; higher is better. {metrics['epochs']} epochs in "
        f"{seconds['train']:.1f} s on {metrics['device']}, then {seconds['evaluation']:.1f} s "
        "of evaluation.",
    ]


def _model_line(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    if "label_estimator" in metrics:  # the semi-supervised VAE
        return (
            f"{metrics['model']} with {config['labels']} labelled training images: "
            f"{config['network']} network, z = {config['latent_dim']}, {config['likelihood']} "
            f"likelihood; y estimated by {metrics['label_estimator']}, classifier weight "
            f"{metrics['classifier_weight']:g}."
        )
    return (
        f"{config['network']} network, z = {config['latent_dim']}, {config['prior']} prior, "
        f"{config['likelihood']} likelihood; {config['guide']} guide fitted by "
        f"{config['objective']}."
    )


def summary_markdown(folder: str | Path, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The summary page's Markdown, from a run's ``config.json`` and ``metrics.json``."""
    data = metrics["data"]
    lines = [
        f"# pyro-vae train: {folder}",
        "",
        f"Data: {metrics['dataset']} ({metrics['binarization']['mode']} binarization), "
        f"{data['num_train']} training and {data['num_test']} test images. Model: "
        + _model_line(config, metrics),
        "",
        *_scores(metrics),
        "",
        "## Pictures",
        "",
    ]
    for name in metrics["pictures"]:
        lines += [f"**{PICTURE_TITLES.get(name, name)}**", "", f"![{name}]({name})", ""]
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in config.items()]
    lines += [
        "",
        "## Next",
        "",
        f"`pyro-vae diagnose {folder}` checks how far q(z|x) can be trusted (Pareto k-hat, "
        "collapse, gaps, NUTS, calibration) and writes its own report.html.",
    ]
    return "\n".join(lines) + "\n"


def write_summary(folder: Path, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """``folder/summary.html``, its pictures embedded."""
    write_page(
        folder / "summary.html",
        summary_markdown(folder, config, metrics),
        f"pyro-vae train: {folder}",
    )
