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
    "samples.png": "Images drawn from the model: z ~ p(z), then the decoder's mean",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list | tuple):
        return f"`{value}`" if value else "—"
    return "—" if value is None else str(value)


def _scores(metrics: dict[str, Any]) -> list[str]:
    test = metrics["test"]
    lines = [
        "## Scores",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| ELBO on the test images | {_fmt(test['elbo'])} |",
        f"| log p(x) on the test images (K = {test['is_samples']}) | "
        f"{_fmt(test['log_likelihood'])} |",
        f"| recon. term of the test ELBO | {_fmt(test['reconstruction'])} |",
        f"| KL term of the test ELBO | {_fmt(test['kl'])} |",
        f"| ELBO on the training images | {_fmt(metrics['train']['elbo'])} |",
    ]
    if "bits_per_dim" in test:
        lines.append(f"| bits per dimension | {_fmt(test['bits_per_dim'])} |")
    seconds = metrics["wall_time_s"]
    return lines + [
        "",
        f"In {metrics['units']}; higher is better. {metrics['epochs']} epochs in "
        f"{seconds['train']:.1f} s on {metrics['device']}, then {seconds['evaluation']:.1f} s "
        "of evaluation.",
    ]


def summary_markdown(folder: str | Path, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The summary page's Markdown, from a run's ``config.json`` and ``metrics.json``."""
    data = metrics["data"]
    lines = [
        f"# pyro-vae train: {folder}",
        "",
        f"Data: {metrics['dataset']} ({metrics['binarization']['mode']} binarization), "
        f"{data['num_train']} training and {data['num_test']} test images. Model: "
        f"{config['network']} network, z = {config['latent_dim']}, {config['prior']} prior, "
        f"{config['likelihood']} likelihood; {config['guide']} guide fitted by "
        f"{config['objective']}.",
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
