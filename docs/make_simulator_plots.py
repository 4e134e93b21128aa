"""Draw the pictures of ``docs/simulator.md`` (``docs/img/sim_*.png``) from fresh simulations.

Run from the repository root: ``python docs/make_simulator_plots.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from caloforge.simulate import simulate  # noqa: E402
from caloforge.simulate.energies import DS1_ENERGIES  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"
N_PER_ENERGY = 400


def _save(fig: plt.Figure, name: str) -> None:
    IMG.mkdir(exist_ok=True)
    path = IMG / name
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


def average_images(dataset: str, energy: float, n: int = 2000, seed: int = 0) -> None:
    """Average shower per layer (polar r-alpha images, r as bin index), log colour scale."""
    s = simulate(dataset, energies=np.full(n, energy), seed=seed)
    geo = s.geometry
    mean = s.showers.mean(0)
    vmax = mean.max()
    fig, axes = plt.subplots(1, geo.n_layers, figsize=(2.0 * geo.n_layers, 2.4),
                             subplot_kw={"projection": "polar"})
    for i, (ax, layer) in enumerate(zip(axes, geo.layers, strict=True)):
        n_a, n_r = layer.shape
        img = mean[geo.layer_slice(i)].reshape(n_a, n_r)
        alpha = np.linspace(-np.pi, np.pi, n_a + 1) if n_a > 1 else np.linspace(-np.pi, np.pi, 33)
        if n_a == 1:
            img = np.repeat(img, 32, axis=0)
        mesh = ax.pcolormesh(alpha, np.arange(n_r + 1), np.maximum(img.T, 1e-3),
                             norm=LogNorm(vmin=vmax * 1e-5, vmax=vmax), cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"layer {layer.id}", fontsize=9)
    fig.colorbar(mesh, ax=axes, shrink=0.7, label="mean MeV / voxel")
    fig.suptitle(f"dataset {dataset}: average of {n} showers at {energy / 1e3:g} GeV "
                 f"(radius = r-bin index)", fontsize=9)
    _save(fig, f"sim_avg_{dataset.replace('1-', 'ds1_')}.png")


def longitudinal() -> None:
    """Dataset-2 electron profiles per energy and dataset-1 layer fractions vs energy."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.3))
    for e_gev in (1, 10, 100, 1000):
        s = simulate("2", energies=np.full(500, e_gev * 1e3), seed=1)
        prof = s.layer_energies().mean(0) / (e_gev * 1e3)
        a1.step(np.arange(45), prof, where="mid", label=f"{e_gev} GeV")
    a1.set_yscale("log")
    a1.set_ylim(1e-5, 0.3)
    a1.set_xlabel("layer (0.8 X0 each)")
    a1.set_ylabel("mean E_layer / E_inc")
    a1.set_title("dataset 2 electrons", fontsize=9)
    a1.legend(fontsize=7)
    for dataset, ls in (("1-photons", "-"), ("1-pions", "--")):
        s = simulate(dataset, energies=np.repeat(DS1_ENERGIES, 150), seed=2)
        frac = s.layer_energies() / s.e_inc[:, None]
        for i, lid in enumerate(s.geometry.layer_ids):
            m = [frac[s.e_inc == e, i].mean() for e in DS1_ENERGIES]
            a2.plot(DS1_ENERGIES / 1e3, m, ls, color=f"C{i}",
                    label=f"layer {lid}" if dataset == "1-pions" else None)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_ylim(1e-4, 1.0)
    a2.set_xlabel("E_inc [GeV]")
    a2.set_ylabel("mean E_layer / E_inc")
    a2.set_title("dataset 1: photons (solid), pions (dashed)", fontsize=9)
    a2.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, "sim_longitudinal.png")


def response() -> None:
    """E_tot/E_inc distributions per incident energy, photons and pions (dataset 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), sharey=True)
    for ax, dataset in zip(axes, ("1-photons", "1-pions"), strict=True):
        s = simulate(dataset, energies=np.repeat(DS1_ENERGIES, N_PER_ENERGY), seed=3)
        ratio = s.showers.sum(1) / s.e_inc
        data = [ratio[s.e_inc == e] for e in DS1_ENERGIES]
        ax.violinplot(data, positions=np.arange(8, 23), showmedians=True, widths=0.8)
        ax.set_xticks(np.arange(8, 23, 2))
        ax.set_xlabel("log2(E_inc / MeV)")
        ax.set_ylim(0.0, 1.6)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_title(f"{dataset}: mean E_tot/E_inc = {ratio.mean():.3f}", fontsize=9)
    axes[0].set_ylabel("E_tot / E_inc")
    fig.tight_layout()
    _save(fig, "sim_response.png")


def main() -> None:
    average_images("1-photons", 65536.0)
    average_images("1-pions", 65536.0)
    longitudinal()
    response()


if __name__ == "__main__":
    main()
