"""MAF / IAF MADE-RQS flows (caloforge.flows.autoregressive)."""

from __future__ import annotations

import pytest
import torch

from caloforge.flows.autoregressive import (
    IAF,
    MADE,
    MAF,
    layer_permutations,
    random_permutations,
)

torch.set_num_threads(1)


def _scramble(flow: torch.nn.Module, scale: float = 1.0, seed: int = 0) -> None:
    """Non-trivial splines: random final-layer weights (the default init is ~identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in flow.blocks:
            last = block.made.linears[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * scale)
            last.bias.copy_(torch.randn(last.bias.shape, generator=gen) * scale)


def test_made_is_autoregressive() -> None:
    torch.manual_seed(0)  # random weights can leave a unit dead for one input: fix the draw
    made = MADE(5, 2, (12, 9), params=3).double()
    with torch.no_grad():
        for lin in made.linears:
            lin.weight.normal_()
    x, c = torch.randn(5, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: made(v[None], c[None])[0], x)  # (5,3,5)
    dep = jac.abs().sum(1) > 0  # output feature i depends on input j
    assert not torch.triu(dep).any()  # only j < i
    assert torch.tril(dep, -1)[1:].any()
    jc = torch.autograd.functional.jacobian(lambda v: made(x[None], v[None])[0], c)
    assert (jc.abs().sum((1, 2)) > 0).all()  # every output sees the context


@pytest.mark.parametrize("cls", [MAF, IAF])
def test_inversion_float32(cls) -> None:
    torch.manual_seed(0)
    flow = cls(7, 3, transforms=3, bins=6, hidden=(24,), bound=5.0)
    _scramble(flow, 0.2)  # moderate slopes: float32 round trips stay well-conditioned
    flow.eval()
    x = torch.randn(64, 7) * 3  # partly beyond the bound: identity tails
    c = torch.randn(64, 3)
    with torch.no_grad():
        z, _ = flow(x, c)
        x2 = flow.inverse(z, c)
    assert (x2 - x).abs().max() < 1e-4
    assert not torch.allclose(z, x, atol=1e-2)  # the transform is not trivial


@pytest.mark.parametrize("cls", [MAF, IAF])
def test_log_det_matches_autograd(cls) -> None:
    torch.manual_seed(1)
    flow = cls(4, 2, transforms=2, bins=5, hidden=(16, 16), bound=3.0).double()
    _scramble(flow, 0.7, seed=1)
    flow.eval()
    x = torch.randn(3, 4, dtype=torch.float64) * 2
    c = torch.randn(3, 2, dtype=torch.float64)
    _, ladj = flow(x, c)
    for n in range(3):
        def f(v, n=n):
            return flow(v[None], c[n:n + 1])[0][0]

        jac = torch.autograd.functional.jacobian(f, x[n]) if cls is MAF else None
        if cls is IAF:  # the data -> noise direction is detached: differentiate z -> x instead
            z = flow(x[n:n + 1], c[n:n + 1])[0][0]
            jinv = torch.autograd.functional.jacobian(
                lambda v, n=n: flow.inverse(v[None], c[n:n + 1])[0], z)
            jac = torch.linalg.inv(jinv)
        ref = torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(ladj[n], ref, atol=1e-8), (ladj[n], ref)


def test_iaf_one_pass_sample_and_log_prob() -> None:
    torch.manual_seed(2)
    flow = IAF(6, 2, transforms=3, bins=4, hidden=(20,), bound=4.0)
    _scramble(flow, 0.5)
    flow.eval()
    c = torch.randn(50, 2)
    x, logq = flow.sample_and_log_prob(c)
    assert x.shape == (50, 6) and logq.shape == (50,)
    assert torch.isfinite(logq).all()
    with torch.no_grad():
        ref = flow.log_prob(x, c)  # D-pass density of given data
    assert torch.allclose(logq, ref, atol=1e-3)
    x.sum().backward()  # the sampling direction is differentiable
    assert flow.blocks[0].made.linears[0].weight.grad is not None


def test_traces_are_consistent() -> None:
    torch.manual_seed(3)
    perms = layer_permutations([3, 2], blocks=3, seed=5)
    flow = MAF(5, 1, transforms=3, bins=4, hidden=(10,), permutations=perms)
    _scramble(flow, 0.2)
    flow.eval()
    x, c = torch.randn(8, 5), torch.randn(8, 1)
    with torch.no_grad():
        fw = flow.forward_trace(x, c)
        iv = flow.inverse_trace(fw.out, c)
    assert len(fw.states) == 4 and len(fw.raws) == 3
    assert fw.raws[0].shape == (8, 5, 11)
    for a, b in zip(fw.states, iv.states, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    for a, b in zip(fw.raws, iv.raws, strict=True):
        assert torch.allclose(a, b, atol=1e-3)
    assert torch.allclose(fw.ladj, iv.ladj, atol=1e-4)
    student = IAF(5, 1, transforms=3, bins=4, hidden=(7,), permutations=flow.permutations)
    assert all(torch.equal(a, b) for a, b in zip(student.permutations, perms, strict=True))


def test_permutations() -> None:
    perms = layer_permutations([3, 4], blocks=4, seed=0)
    assert torch.equal(perms[0], torch.arange(7))
    assert perms[1].tolist() == [2, 1, 0, 6, 5, 4, 3]
    for p in perms:
        assert sorted(p[:3].tolist()) == [0, 1, 2] and sorted(p[3:].tolist()) == [3, 4, 5, 6]
    assert len(random_permutations(5, 3)) == 3
    with pytest.raises(ValueError):
        MAF(3, 0, transforms=2, permutations=[torch.arange(3), torch.tensor([0, 0, 1])])


def test_unconditional_and_sample() -> None:
    flow = MAF(3, 0, transforms=2, bins=4, hidden=(8,))
    x = flow.sample(None, n=5)
    assert x.shape == (5, 3)
    assert flow.log_prob(x, None).shape == (5,)


@pytest.mark.parametrize("cls", [MAF, IAF])
def test_incremental_solver_equals_full_passes(cls) -> None:
    """The O(N H)-per-feature sequential solve equals the textbook D full MADE passes."""
    torch.manual_seed(3)
    flow = cls(9, 2, transforms=2, bins=5, hidden=(20, 16), bound=4.0).double()
    _scramble(flow, 0.3)
    flow.eval()
    x, c = torch.randn(16, 9, dtype=torch.float64) * 2, torch.randn(16, 2, dtype=torch.float64)
    with torch.no_grad():
        seq = flow.inverse if cls is MAF else (lambda v, ctx: flow(v, ctx)[0])
        fast = seq(x, c)
        flow.set_solver("full")
        slow = seq(x, c)
    assert torch.allclose(fast, slow, atol=1e-10)
    with pytest.raises(ValueError, match="solver"):
        flow.set_solver("fast")



@pytest.mark.parametrize("cls", [MAF, IAF])
def test_skip_reads_only_the_leading_context(cls) -> None:
    """``skip_context``: a (k, D P) skip instead of (C, D P); the flow stays exact (inversion,
    incremental == full passes) and every output still sees the whole context."""
    torch.manual_seed(4)
    flow = cls(6, 10, transforms=2, bins=5, hidden=(16,), bound=4.0, skip_context=3).double()
    assert flow.blocks[0].made.skip.weight.shape == (6 * (3 * 5 - 1), 3)
    _scramble(flow, 0.3)
    flow.eval()
    x, c = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 10, dtype=torch.float64)
    with torch.no_grad():
        z, _ = flow(x, c)
        assert (flow.inverse(z, c) - x).abs().max() < 1e-9
        seq = flow.inverse if cls is MAF else (lambda v, ctx: flow(v, ctx)[0])
        fast = seq(x, c)
        flow.set_solver("full")
        assert torch.allclose(fast, seq(x, c), atol=1e-10)
    made = flow.blocks[0].made
    jc = torch.autograd.functional.jacobian(lambda v: made(x[:1], v[None])[0], c[0])
    assert (jc.abs().sum((0, 1)) > 0).all()  # the wide context part through the hidden layer
    with pytest.raises(ValueError, match="skip_context"):
        MADE(4, 2, (8,), params=3, skip_context=5)


def test_checkpointed_blocks_give_the_same_loss_and_gradients() -> None:
    """``checkpoint_blocks``: recomputing each block in backward changes memory, not maths."""
    torch.manual_seed(5)
    flow = MAF(6, 2, transforms=3, bins=5, hidden=(16,), bound=4.0).double()
    _scramble(flow, 0.3)
    x, c = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    grads = []
    for on in (False, True):
        flow.checkpoint_blocks = on
        flow.zero_grad()
        loss = -flow.log_prob(x, c).mean()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in flow.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_checkpointed_traced_passes_give_the_same_distillation_gradients() -> None:
    """Checkpointing the traced passes (student IAF inverse, teacher MAF forward: the fully
    guided distillation loss) changes memory, not the loss or the student's gradients."""
    from caloforge.models.caloflow import DISTILLATION_DEFAULTS, distillation_loss

    torch.manual_seed(6)
    teacher = MAF(6, 2, transforms=3, bins=5, hidden=(16,), bound=4.0).double()
    student = IAF(6, 2, transforms=3, bins=5, hidden=(16,), bound=4.0,
                  permutations=teacher.permutations).double()
    _scramble(teacher, 0.3)
    _scramble(student, 0.3)
    teacher.requires_grad_(False)
    x, c = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    cfg = {**DISTILLATION_DEFAULTS, "fully_guided": True}
    results = []
    for on in (False, True):
        student.checkpoint_blocks = teacher.checkpoint_blocks = on
        student.zero_grad()
        torch.manual_seed(7)  # the z-side noise
        loss = distillation_loss(student, teacher, x, c, c, cfg)["loss"]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in student.parameters()]))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-12)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.allclose(a, b, atol=1e-10)
