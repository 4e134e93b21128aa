"""caloforge.flows: inversion, exact log-determinants, shapes, training on a toy."""

from __future__ import annotations

import pytest
import torch

from caloforge.errors import ConfigError
from caloforge.flows import ContextEmbedding, CouplingRQSFlow, Flow

torch.set_num_threads(1)


def randomise(flow: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> None:
    """Perturb every parameter so that the (zero-initialised) couplings are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def make(features: int, context: int = 2, **kw) -> CouplingRQSFlow:
    kw.setdefault("hidden", (16, 16))
    kw.setdefault("transforms", 3)
    flow = CouplingRQSFlow(features, context, **kw)
    flow.train()
    gen = torch.Generator().manual_seed(1)
    c = torch.randn(64, context, generator=gen) if context else None
    flow(torch.randn(64, features, generator=gen) * 3, c)  # data-initialise ActNorm
    randomise(flow)
    return flow.eval()


@pytest.mark.parametrize("kw", [{}, {"residual": True, "hidden": (16, 16, 16)},
                                {"actnorm": False, "permute": False, "bins": 4},
                                {"bound": 2.0}])
def test_inversion_float32(kw):
    flow = make(7, **kw)
    x = torch.randn(256, 7) * 3  # partly outside the spline bound: the identity tails
    c = torch.randn(256, 2)
    with torch.no_grad():
        z, _ = flow(x, c)
        back = flow.inverse(z, c)
        assert (back - x).abs().max() < 1e-4
        x2 = flow.sample(c)
        z2, _ = flow(x2, c)
        assert (flow.inverse(z2, c) - x2).abs().max() < 1e-4


@pytest.mark.parametrize("features,context,kw", [
    (4, 2, {}), (5, 1, {"residual": True, "hidden": (8, 8)}),
    (6, 3, {"context_embedding": "emb"}), (5, 0, {"bins": 3})])
def test_log_det_equals_autograd_jacobian(features, context, kw):
    torch.manual_seed(0)
    if kw.get("context_embedding") == "emb":
        kw["context_embedding"] = ContextEmbedding(context, 4, hidden=(8,))
    flow = make(features, context, **kw).double()
    x = torch.randn(6, features, dtype=torch.float64) * 2
    c = torch.randn(6, context, dtype=torch.float64) if context else None
    _, ladj = flow(x, c)
    for i in range(len(x)):
        ci = c[i:i + 1] if c is not None else None
        jac = torch.autograd.functional.jacobian(lambda v, ci=ci: flow(v[None], ci)[0][0], x[i])
        _, logdet = torch.linalg.slogdet(jac)  # permutations may make the sign negative
        torch.testing.assert_close(ladj[i], logdet, rtol=1e-8, atol=1e-8)


def test_shapes_and_conventions():
    flow = make(5, 1)
    assert isinstance(flow, Flow)
    x, c = torch.randn(11, 5), torch.randn(11, 1)
    z, ladj = flow(x, c)
    assert z.shape == (11, 5) and ladj.shape == (11,)
    assert flow.log_prob(x, c).shape == (11,)
    assert flow.log_prob(x, c[:, 0]).shape == (11,)  # a 1-D context is one feature
    assert flow.sample(c).shape == (11, 5)
    zz = torch.randn(11, 5)
    torch.testing.assert_close(flow.sample(c, zz), flow.inverse(zz, c))  # deterministic
    unc = make(3, 0)
    assert unc.sample(None, n=4).shape == (4, 3)
    assert unc.log_prob(torch.randn(4, 3)).shape == (4,)


def test_state_dict_round_trip():
    a = make(6, 2)
    b = CouplingRQSFlow(6, 2, transforms=3, hidden=(16, 16))
    b.load_state_dict(a.state_dict())
    b.eval()
    x, c = torch.randn(9, 6), torch.randn(9, 2)
    torch.testing.assert_close(a.log_prob(x, c), b.log_prob(x, c))


def test_identity_at_initialisation_without_actnorm():
    flow = CouplingRQSFlow(4, 1, transforms=2, hidden=(8,), actnorm=False, permute=False)
    x = torch.randn(10, 4)
    z, ladj = flow(x, torch.zeros(10, 1))
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ladj, torch.zeros(10))


def test_training_reduces_nll_on_a_2d_toy():
    torch.manual_seed(0)
    n = 1024
    c = torch.rand(n, 1) * 2 - 1
    angle = torch.rand(n) * 6.283
    x = torch.stack([torch.cos(angle), torch.sin(angle)], 1) * (1.5 + c) + 0.1 * torch.randn(n, 2)
    flow = CouplingRQSFlow(2, 1, transforms=4, hidden=(32, 32), bins=8)
    flow.train()
    before = -flow.log_prob(x, c).mean().item()
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(0, n, (256,))
        loss = -flow.log_prob(x[idx], c[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    with torch.no_grad():
        after = -flow.log_prob(x, c).mean().item()
    assert after < before - 0.3, (before, after)


def test_bad_configuration_raises_config_error():
    with pytest.raises(ConfigError):
        CouplingRQSFlow(1, 0)
    with pytest.raises(ConfigError):
        CouplingRQSFlow(4, 0, residual=True, hidden=(8, 16))


def test_rqs_transform_matches_zuko():
    """caloforge's spline set-up (explicit exp/sum instead of torch.softmax) is zuko's
    MonotonicRQSTransform: same knots, values, log-determinants and inverse to rounding."""
    from zuko.transforms import MonotonicRQSTransform

    from caloforge.flows.spline import RQSTransform

    gen = torch.Generator().manual_seed(3)
    k = 8
    p = torch.randn(64, 12, 3 * k - 1, generator=gen, dtype=torch.float64) * 2
    x = torch.randn(64, 12, generator=gen, dtype=torch.float64) * 4  # tails included
    ours = RQSTransform(p[..., :k], p[..., k:2 * k], p[..., 2 * k:], bound=5.0, slope=1e-3)
    ref = MonotonicRQSTransform(p[..., :k], p[..., k:2 * k], p[..., 2 * k:], bound=5.0,
                                slope=1e-3)
    for name in ("horizontal", "vertical", "derivatives"):
        assert torch.allclose(getattr(ours, name), getattr(ref, name), atol=1e-12)
    y, ladj = ours.call_and_ladj(x)
    y_ref, ladj_ref = ref.call_and_ladj(x)
    assert torch.allclose(y, y_ref, atol=1e-10) and torch.allclose(ladj, ladj_ref, atol=1e-8)
    assert torch.allclose(ours.inv(y), x, atol=1e-8)
