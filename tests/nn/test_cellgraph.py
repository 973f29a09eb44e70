"""The cell-graph model: relational mean/max aggregation by hand, messages flow only along the given edges, the padded
and ragged paths agree (neighbour slots remapped), permutation equivariance, and clear errors."""
import pytest
import torch

from pcloud.nn import build_model, padded_to_ragged
from pcloud.nn.cellgraph import CellGraphNet, cell_graph_edges, relational_aggregate

F = 3


def _model(graph_layers=2, seed=0):
    torch.manual_seed(seed)
    return CellGraphNet(F, n_seg_classes=2, n_classes=2, channels=(8, 8, 8), graph_layers=graph_layers,
                        seg_hidden=(8,), head_hidden=(8,)).eval()


def _chain_batch():
    """Two events: event 0 holds points 0-3 (a chain 0-1-2-3, points 2 and 3 one layer behind 0 and 1), event 1
    points 4-5 (5 neighbours 4 in the same layer)."""
    torch.manual_seed(1)
    x = torch.randn(6, F)
    nbr = torch.tensor([[1, -1], [0, 2], [1, 3], [2, -1], [5, -1], [4, -1]])
    layer = torch.tensor([0, 0, 1, 1, 2, 2])
    return {"x": x, "batch": torch.tensor([0, 0, 0, 0, 1, 1]), "nbr": nbr, "layer": layer}


def test_edges_and_relations_by_hand():
    b = _chain_batch()
    dst, rel, lengths = cell_graph_edges(b["nbr"], b["layer"])
    src = torch.repeat_interleave(torch.arange(18) // 3, lengths)
    edges = list(zip(src.tolist(), dst.tolist(), rel.tolist()))
    # 1 -> 2: the neighbour lies one layer behind (outer, 2); 2 -> 1: in front (inner, 1); same layer: 0; sorted by
    # (point, relation)
    assert edges == [(0, 1, 0), (1, 0, 0), (1, 2, 2), (2, 3, 0), (2, 1, 1), (3, 2, 0), (4, 5, 0), (5, 4, 0)]
    assert lengths.tolist() == [1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="outside"):
        cell_graph_edges(torch.tensor([[7]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="layer"):
        cell_graph_edges(b["nbr"], b["layer"][:3])


def test_relational_aggregate_hand_values():
    h = torch.tensor([[1.0, -2.0], [3.0, 4.0], [5.0, -6.0]], requires_grad=True)
    # point 0 sees 1 and 2 in the same layer, point 1 sees 0 behind; point 2 sees nothing
    dst, lengths = torch.tensor([1, 2, 0]), torch.tensor([2, 0, 0, 0, 0, 1, 0, 0, 0])
    agg = relational_aggregate(h, dst, lengths)
    out = agg.view(3, 3, 2, 2)  # (point, relation, mean/max, channel)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([4.0, -1.0]))  # mean of rows 1, 2
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([5.0, 4.0]))  # max
    torch.testing.assert_close(out[1, 2, 0], h[0])
    torch.testing.assert_close(out[1, 2, 1], h[0])
    assert torch.count_nonzero(out[0, 1:]) == 0 and torch.count_nonzero(out[1, :2]) == 0
    assert torch.count_nonzero(out[2]) == 0  # no neighbours: zeros, not -inf
    # gradients: the mean spreads 1/2 to rows 1 and 2, the max picks row 2 (channel 0) and row 1 (channel 1)
    agg.sum().backward()
    torch.testing.assert_close(h.grad, torch.tensor([[2.0, 2.0], [0.5, 1.5], [1.5, 0.5]]))
    with pytest.raises(ValueError, match="lengths"):
        relational_aggregate(h, dst, lengths[:3])


def test_messages_follow_the_graph_only():
    """The local features (output of the shared layers, before pooling) of point 0 change when a graph neighbour's
    features change (two hops: point 2 via point 1 with 2 graph layers) and not when a point outside its graph
    neighbourhood does; without graph layers nothing but the point itself matters."""
    b = _chain_batch()

    def local(model, batch):
        feats = {}
        hooks = [model.layers[-1].register_forward_hook(lambda m, i, o: feats.__setitem__("h", o))]
        model(batch)
        hooks[0].remove()
        return feats["h"]

    for graph_layers, moves in ((2, {1: True, 2: True, 3: False}), (1, {1: True, 2: False, 3: False}),
                                (0, {1: False, 2: False, 3: False})):
        m = _model(graph_layers)
        base = local(m, b)
        for p, expect in moves.items():
            x = b["x"].clone()
            x[p] += 3.0
            changed = not torch.allclose(local(m, {**b, "x": x})[0], base[0])
            assert changed == expect, (graph_layers, p)


def test_padded_equals_ragged_and_equivariance():
    m = _model()
    rag = _chain_batch()
    out = m(rag)
    # the same two events padded to 4 slots, event 1 stored in reverse order: slots remap the neighbours
    B, N = 2, 4
    x = torch.zeros(B, N, F)
    mask = torch.zeros(B, N, dtype=torch.bool)
    x[0, :4], mask[0, :4] = rag["x"][:4], True
    x[1, :2], mask[1, :2] = rag["x"][[5, 4]], True
    nbr = torch.full((B, N, 2), -1, dtype=torch.int16)
    nbr[0, :4] = rag["nbr"][:4].to(torch.int16)
    nbr[1, 0, 0], nbr[1, 1, 0] = 1, 0
    layer = torch.zeros(B, N, dtype=torch.int16)
    layer[0, :4] = rag["layer"][:4].to(torch.int16)
    layer[1, :2] = 2
    pad = m({"x": x, "mask": mask, "nbr": nbr, "layer": layer})
    torch.testing.assert_close(pad["seg_logits"][0, :4], out["seg_logits"][:4])
    torch.testing.assert_close(pad["seg_logits"][1, :2], out["seg_logits"][[5, 4]])
    torch.testing.assert_close(pad["logits"], out["logits"])
    assert torch.count_nonzero(pad["seg_logits"][~mask]) == 0
    back = padded_to_ragged({"x": x, "mask": mask, "nbr": nbr, "layer": layer})
    assert back["nbr"].tolist() == [[1, -1], [0, 2], [1, 3], [2, -1], [5, -1], [4, -1]]


def test_registry_and_errors():
    m = build_model("cellgraph", in_channels=F, n_seg_classes=2, channels=(8, 8), graph_layers=1)
    assert isinstance(m, CellGraphNet)
    b = _chain_batch()
    with pytest.raises(KeyError, match="nbr"):
        m({k: v for k, v in b.items() if k != "nbr"})
    with pytest.raises(ValueError, match="graph_layers"):
        CellGraphNet(F, channels=(8, 8), graph_layers=3)
    assert _model(0)({k: v for k, v in b.items() if k not in ("nbr", "layer")})["seg_logits"].shape == (6, 2)


def test_padded_neighbour_slot_outside_the_event_is_refused():
    x = torch.zeros(2, 3, F)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    nbr = torch.full((2, 3, 1), -1, dtype=torch.int16)
    nbr[0, 0, 0] = 3  # slot 3 does not exist in an event of 3 slots (it would land on the next event)
    with pytest.raises(ValueError, match="slot 3"):
        padded_to_ragged({"x": x, "mask": mask, "nbr": nbr, "layer": torch.zeros(2, 3, dtype=torch.int16)})
