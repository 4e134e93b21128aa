"""The fused sampling paths equal the reference ones: :func:`caloforge.flows.spline.rqs_inverse`
against :class:`~caloforge.flows.spline.RQSTransform` (values, inversion, gradients), and the
permutation-folded :meth:`CouplingRQSFlow.inverse` against the block-by-block inverse."""

from __future__ import annotations

import pytest
import torch

from caloforge.flows import CouplingRQSFlow
from caloforge.flows.spline import RQSTransform, rqs_inverse


def _spline(raw: torch.Tensor, bound: float) -> RQSTransform:
    k = (raw.shape[-1] + 1) // 3
    return RQSTransform(raw[..., :k], raw[..., k:2 * k], raw[..., 2 * k:], bound=bound)


@pytest.mark.parametrize("bins", [2, 8, 10])
def test_rqs_inverse_equals_transform_inverse_float64(bins):
    gen = torch.Generator().manual_seed(bins)
    raw = 2 * torch.randn(300, 7, 3 * bins - 1, generator=gen, dtype=torch.float64)
    y = 4 * torch.randn(300, 7, generator=gen, dtype=torch.float64)  # also outside the bound
    t = _spline(raw, 3.0)
    with torch.inference_mode():  # the in-place (sampling) branch
        x = rqs_inverse(raw, y, 3.0)
    torch.testing.assert_close(x, t.inverse(y), rtol=0, atol=1e-10)
    torch.testing.assert_close(t(x), y, rtol=0, atol=1e-10)  # it inverts the forward spline
    outside = y.abs() > 3.0
    assert outside.any() and torch.equal(x[outside], y[outside])  # identity tails


def test_rqs_inverse_float32_accuracy_and_gradients():
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(500, 9, 29, generator=gen, dtype=torch.float64)
    y = 3 * torch.randn(500, 9, generator=gen, dtype=torch.float64)
    truth = _spline(raw, 5.0).inverse(y)
    x32 = rqs_inverse(raw.float(), y.float(), 5.0)
    ref32 = _spline(raw.float(), 5.0).inverse(y.float())
    err, ref_err = (x32.double() - truth).abs().max(), (ref32.double() - truth).abs().max()
    assert err < 1e-4 and err < 3 * ref_err + 1e-6  # as accurate as the reference in float32
    # gradients (the student's training samples through the inverse) equal the reference's
    r1, y1 = raw.clone().requires_grad_(), y.clone().requires_grad_()
    r2, y2 = raw.clone().requires_grad_(), y.clone().requires_grad_()
    rqs_inverse(r1, y1, 5.0).pow(2).sum().backward()
    _spline(r2, 5.0).inverse(y2).pow(2).sum().backward()
    torch.testing.assert_close(r1.grad, r2.grad, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(y1.grad, y2.grad, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("kw", [{}, {"permute": False}, {"actnorm": False}])
def test_folded_coupling_inverse_equals_reference(kw):
    torch.manual_seed(0)
    flow = CouplingRQSFlow(11, 2, transforms=5, bins=6, hidden=(32,), bound=4.0, **kw)
    flow = flow.double().eval()  # eval: no data-initialisation of the ActNorms
    with torch.no_grad():  # non-trivial splines and ActNorms
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z, c = torch.randn(64, 11, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    with torch.inference_mode():
        x = flow.inverse(z, c)
        ref = flow.inverse_blockwise(z, c)
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-10)
    z_back, _ = flow(x, c)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-8)
    # float32: the same samples from the same noise to float32 round-off
    flow32 = flow.float()
    with torch.inference_mode():
        x32 = flow32.inverse(z.float(), c.float())
    torch.testing.assert_close(x32.double(), ref, rtol=0, atol=1e-4)


def test_iaf_sampling_path_equals_reference_and_follows_weight_updates():
    from caloforge.flows.autoregressive import IAF

    torch.manual_seed(0)
    flow = IAF(12, 3, transforms=3, bins=5, hidden=(24,), bound=4.0).double().eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    z, c = torch.randn(50, 12, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)

    def reference(z: torch.Tensor) -> torch.Tensor:  # RQSTransform inverse, plain MADE pass
        h = z
        for k in reversed(range(flow.transforms)):
            block = flow.blocks[k]
            h = block.spline(block.made(h, c)).inverse(h)
            h = h[:, getattr(flow, f"iperm{k}")]
        return h

    with torch.inference_mode():
        x = flow.inverse(z, c)
        torch.testing.assert_close(x, reference(z), rtol=0, atol=1e-10)
    with torch.no_grad():  # MADE's fused sampling pass == its forward, incl. the skip
        made = flow.blocks[0].made
        torch.testing.assert_close(made.forward_sampling(z, c), made(z, c), rtol=0, atol=1e-12)
        made.skip.weight.add_(1.0)  # an in-place update must invalidate the cached weights
        made.linears[-1].weight.mul_(2.0)
        torch.testing.assert_close(made.forward_sampling(z, c), made(z, c), rtol=0, atol=1e-12)
        x2 = flow.inverse(z, c)
        torch.testing.assert_close(x2, reference(z), rtol=0, atol=1e-10)
    assert not torch.allclose(x2, x)
    # with autograd the reference path is taken and the sample is differentiable
    zg = z.clone().requires_grad_()
    flow.inverse(zg, c).sum().backward()
    assert zg.grad is not None and torch.isfinite(zg.grad).all()
