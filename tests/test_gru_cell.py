"""The hand-written GRU cell backward used in training equals autograd through nn.GRUCell.

float64 runs the torch-op path; float32 on the CPU runs the fused kernels (kernels.gru_forward /
gru_backward), compared with the float64 answer at float32 precision.
"""
import pytest
import torch

from nextitem.training.gru_cell import GRUCellFn, gru_cell


@pytest.mark.parametrize("n,d_in,d_h", [(4, 5, 7), (1, 3, 3), (9, 16, 8)])
def test_gru_cell_matches_nn_grucell(n, d_in, d_h):
    torch.manual_seed(n)
    cell = torch.nn.GRUCell(d_in, d_h).double()
    x = torch.randn(n, d_in, dtype=torch.double, requires_grad=True)
    h = torch.randn(n, d_h, dtype=torch.double)
    params = [x, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    out_ref = cell(x, h)
    g = torch.randn_like(out_ref)
    ref = torch.autograd.grad(out_ref, params, g)
    out = GRUCellFn.apply(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    mine = torch.autograd.grad(out, params, g)
    torch.testing.assert_close(out, out_ref)
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("n,d_in,d_h", [(4, 5, 7), (1, 3, 3), (48, 64, 32)])
@pytest.mark.parametrize("h_transposed", [False, True])  # the carried state comes in either layout
@pytest.mark.parametrize("x_grad", [False, True])
@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: saturated gates (sigmoid 0 / 1, tanh +-1)
def test_fused_float32_cell_matches_float64(n, d_in, d_h, h_transposed, x_grad, scale):
    torch.manual_seed(n + d_h)
    cell = torch.nn.GRUCell(d_in, d_h)
    with torch.no_grad():
        cell.bias_ih.normal_(0, 0.5)
        cell.bias_hh.normal_(0, 0.5)
    x = (torch.randn(n, d_in) * scale).requires_grad_(x_grad)
    h = torch.randn(d_h, n).t() if h_transposed else torch.randn(n, d_h)
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh] + ([x] if x_grad else [])
    ref_cell = torch.nn.GRUCell(d_in, d_h).double()
    ref_cell.load_state_dict({k: v.double() for k, v in cell.state_dict().items()})
    x64 = x.detach().double().requires_grad_(x_grad)
    ref_params = [ref_cell.weight_ih, ref_cell.weight_hh, ref_cell.bias_ih, ref_cell.bias_hh] + ([x64] if x_grad else [])
    out_ref = ref_cell(x64, h.double())
    g = torch.randn_like(out_ref)
    ref = torch.autograd.grad(out_ref, ref_params, g)
    # float32 through nn.GRUCell sets the scale of rounding error to allow (its products dominate it)
    out32 = cell(x, h)
    torch32 = torch.autograd.grad(out32, params, g.float())
    out = gru_cell(cell, x, h)
    mine = torch.autograd.grad(out, params, g.float())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()

    def close(a, b, a32):
        a, b, a32 = a.detach(), b.detach(), a32.detach()
        err32 = float((a32.double() - b).abs().max())
        torch.testing.assert_close(a.double(), b, rtol=0, atol=max(4 * err32, 1e-6 * max(1.0, float(b.abs().max()))))

    close(out, out_ref, out32)
    for a, b, a32 in zip(mine, ref, torch32):
        close(a, b, a32)


def test_fused_cell_with_all_threads():
    """The parallel path of the kernels (the rest of the suite runs numba on one thread)."""
    import numba

    from .conftest import DEFAULT_NUMBA_THREADS

    old = numba.get_num_threads()
    numba.set_num_threads(DEFAULT_NUMBA_THREADS)
    try:
        test_fused_float32_cell_matches_float64(48, 64, 32, True, True, 1.0)
    finally:
        numba.set_num_threads(old)
