"""The hand-written GRU cell backward used in training equals autograd through nn.GRUCell."""
import pytest
import torch

from nextitem.models.gru4rec import _GRUCellFn


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
    out = _GRUCellFn.apply(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    mine = torch.autograd.grad(out, params, g)
    torch.testing.assert_close(out, out_ref)
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b)
