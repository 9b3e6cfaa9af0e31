"""learnthy_nb.scalablefl: sub-model extraction (exact slices), count averaging, the size rule, the methods as
configurations (FedAvg equals plain FedAvg), determinism, the bound's terms, and every ValueError path."""
import math

import pytest
import torch

from learnthy_nb.core import integers
from learnthy_nb.scalablefl import (METHODS, ClientSpec, CommonModel, TaskSpec, TrainConfig, aggregate, bound_terms,
                                    choose_submodel, client_specs, client_update, extract_submodel,
                                    make_heterogeneous_clients, run_federated, submodel_forward, submodel_index)


def _state(seed=0, channels=(8, 16, 32, 32, 64)):
    return CommonModel(channels).init_state(generator=torch.Generator().manual_seed(seed), device="cpu")


@pytest.fixture(scope="module")
def clients():
    return make_heterogeneous_clients(4, sizes=(8, 16, 32, 8), label_sets=((0, 1), 5, 10, (3, 7)), seed=0,
                                      n_train=(10, 20, 30, 12), n_test=8, device="cpu")


@pytest.mark.parametrize("rate,depth", [(1.0, 4), (0.5, 2), (0.25, 3), (0.3, 1), (1.0, 1)])
def test_extracted_parameters_are_exact_slices(rate, depth):
    state = _state()
    sub = extract_submodel(state, rate, depth, labels=(2, 9))
    keep = lambda c: math.ceil(rate * c - 1e-9)
    assert set(sub) == ({"stem.conv.weight", "stem.bn.weight", "stem.bn.bias", f"head{depth}.weight", f"head{depth}.bias"}
                        | {f"layer{k}.{p}" for k in range(1, depth + 1) for p in ("conv.weight", "bn.weight", "bn.bias")})
    assert torch.equal(sub["stem.conv.weight"], state["stem.conv.weight"][: keep(8)])
    c_prev = keep(8)
    for k, c in zip(range(1, depth + 1), (16, 32, 32, 64)):
        assert torch.equal(sub[f"layer{k}.conv.weight"], state[f"layer{k}.conv.weight"][: keep(c), :c_prev])
        assert torch.equal(sub[f"layer{k}.bn.bias"], state[f"layer{k}.bn.bias"][: keep(c)])
        c_prev = keep(c)
    assert torch.equal(sub[f"head{depth}.weight"], state[f"head{depth}.weight"][[2, 9], :c_prev])
    assert torch.equal(sub[f"head{depth}.bias"], state[f"head{depth}.bias"][[2, 9]])
    sub["stem.conv.weight"] += 1                                        # a copy: the common state is not touched
    assert not torch.equal(sub["stem.conv.weight"], state["stem.conv.weight"][: keep(8)])


def test_full_width_and_depth_is_the_common_model():
    state = _state(1)
    full = extract_submodel(state, 1.0, 4)
    assert all(torch.equal(full[k], state[k]) for k in full)
    assert set(state) - set(full) == {f"head{k}.{p}" for k in (1, 2, 3) for p in ("weight", "bias")}
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(submodel_forward(full, x), submodel_forward(state, x))


def test_aggregating_one_client_is_the_identity_and_identical_clients_give_that_client():
    state = _state(2)
    sub = {k: v + 0.5 for k, v in extract_submodel(state, 0.5, 3, labels=(1, 4, 6)).items()}
    spec = ClientSpec(0.5, 3, (1, 4, 6), 7.0)
    for states, specs in (([sub], [spec]), ([sub, sub, sub], [spec, ClientSpec(0.5, 3, (1, 4, 6), 2.0), spec])):
        new = aggregate(state, states, specs)
        for k, v in sub.items():
            assert torch.allclose(new[k][submodel_index(k, state[k].shape, 0.5, (1, 4, 6))], v, rtol=1e-6, atol=1e-7)
    assert torch.equal(new["layer4.conv.weight"], state["layer4.conv.weight"])      # held by no client
    assert torch.equal(new["head3.weight"][[0, 2]], state["head3.weight"][[0, 2]])  # rows held by no client
    assert torch.equal(new["layer3.conv.weight"][16:], state["layer3.conv.weight"][16:])


def test_count_averaging_matches_a_hand_computed_case():
    state = _state(3)
    a = {k: torch.full_like(v, 2.0) for k, v in extract_submodel(state, 1.0, 2, labels=(0, 1)).items()}
    b = {k: torch.full_like(v, 6.0) for k, v in extract_submodel(state, 0.5, 1, labels=(1, 5)).items()}
    new = aggregate(state, [a, b], [ClientSpec(1.0, 2, (0, 1), 3.0), ClientSpec(0.5, 1, (1, 5), 1.0)])
    w = new["stem.conv.weight"]
    assert torch.allclose(w[:4], torch.full_like(w[:4], 3.0))          # (3 x 2 + 1 x 6) / 4 on the shared channels
    assert torch.allclose(w[4:], torch.full_like(w[4:], 2.0))          # the wide client alone
    l1 = new["layer1.conv.weight"]
    assert torch.allclose(l1[:8, :4], torch.full_like(l1[:8, :4], 3.0)) and torch.allclose(l1[8:], torch.full_like(l1[8:], 2.0))
    assert torch.allclose(l1[:8, 4:], torch.full_like(l1[:8, 4:], 2.0))
    assert torch.allclose(new["head1.bias"][[1, 5]], torch.tensor([6.0, 6.0]))     # head1: client b only
    assert torch.equal(new["head1.bias"][[0, 2, 3, 4]], state["head1.bias"][[0, 2, 3, 4]])
    assert torch.allclose(new["head2.weight"][[0, 1]], torch.full((2, 32), 2.0))
    # unit weights: HeteroFL's plain count averaging
    new = aggregate(state, [a, b], [ClientSpec(1.0, 2, (0, 1)), ClientSpec(0.5, 1, (1, 5))])
    assert torch.allclose(new["stem.bn.bias"][:4], torch.full((4,), 4.0))


def test_fedavg_configuration_equals_plain_fedavg(clients):
    cl = make_heterogeneous_clients(3, sizes=(8, 16, 8), label_sets=(10,), seed=2, n_train=(15, 25, 35), n_test=5,
                                    device="cpu")
    cfg = TrainConfig(local_steps=3, batch_size=8)
    run = run_federated("fedavg", cl, 3, config=cfg, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    w = CommonModel().init_state(generator=g, device="cpu")
    gens = [torch.Generator().manual_seed(int(s)) for s in integers(0, 2**62, (3,), generator=g).tolist()]
    for _ in range(3):
        out = [client_update({k: v for k, v in w.items() if not k.startswith(("head1", "head2", "head3"))}, {}, c, cfg, gg)
               for c, gg in zip(cl, gens)]
        n = sum(m for _, _, m in out)
        w = {k: (sum(m * s[k] for s, _, m in out) / n if k in out[0][0] else v) for k, v in w.items()}
    for k in w:
        assert torch.allclose(run.common_state[k], w[k], atol=1e-6), k
    assert run.params_per_round == 2 * 3 * sum(v.numel() for k, v in w.items() if not k.startswith(("head1", "head2", "head3")))


def test_local_only_sends_nothing_and_runs_are_deterministic(clients):
    cfg = TrainConfig(local_steps=2, batch_size=8)
    a = run_federated("local", clients, 2, config=cfg, generator=torch.Generator().manual_seed(0))
    init = CommonModel().init_state(generator=torch.Generator().manual_seed(0), device="cpu")
    assert a.params_per_round == 0 and all(torch.equal(a.common_state[k], init[k]) for k in init)
    for m in ("scalablefl", "partialfed", "fedbn"):
        r1 = run_federated(m, clients, 2, config=cfg, generator=torch.Generator().manual_seed(4))
        r2 = run_federated(m, clients, 2, config=cfg, generator=torch.Generator().manual_seed(4))
        assert torch.equal(r1.final_test_accuracy, r2.final_test_accuracy)
        assert all(torch.equal(r1.common_state[k], r2.common_state[k]) for k in init)
        assert r1.test_accuracy.shape == (2, len(clients)) and r1.eval_rounds == [1, 2]
    sfl = run_federated("scalablefl", clients, 1, config=cfg)
    fed = run_federated("fedavg", clients, 1, config=cfg)
    assert 0 < sfl.params_per_round < fed.params_per_round
    assert sum(sfl.flops_per_step) < sum(fed.flops_per_step)


def test_methods_are_configurations():
    m = METHODS
    assert m["fedbn"].is_local("layer2.bn.weight") and not m["fedbn"].is_local("layer2.conv.weight")
    assert m["fedper"].is_local("head4.weight") and not m["fedper"].is_local("stem.bn.bias")
    assert not m["partialfed"].is_local("layer2.conv.weight") and m["partialfed"].is_local("layer3.conv.weight")
    assert all(m["local"].is_local(k) for k in _state())
    assert not any(m["fedavg"].is_local(k) for k in _state())
    assert (m["scalablefl"].adjust_width, m["scalablefl"].adjust_depth) == (True, True)
    assert (m["heterofl"].adjust_width, m["heterofl"].adjust_depth) == (True, False)
    assert (m["depthfl"].adjust_width, m["depthfl"].adjust_depth) == (False, True)


def test_size_rule_and_bound_terms(clients):
    assert choose_submodel(TaskSpec(8, 2)) == (0.25, 2)
    assert choose_submodel(TaskSpec(16, 5)) == (0.5, 3)
    assert choose_submodel(TaskSpec(32, 10)) == (1.0, 4)
    specs = client_specs(METHODS["scalablefl"], clients, CommonModel())
    assert [(s.width_rate, s.depth) for s in specs] == [(0.25, 2), (0.5, 3), (1.0, 4), (0.25, 2)]
    shared = bound_terms(METHODS["scalablefl"], specs, clients)
    alone = bound_terms(METHODS["local_sub"], specs, clients)
    assert bool((shared < alone).all())
    n = sum(c.n_train for c in clients)
    for j, (s, c) in enumerate(zip(specs, clients)):
        p = sum(CommonModel().n_params(s.width_rate, s.depth, len(c.labels)).values())
        assert abs(float(alone[j]) - math.log(n) * (p + math.log(4 / 0.05)) / c.n_train) < 1e-9


def test_clients_are_disjoint_and_unequal():
    cl = make_heterogeneous_clients(9, sizes=(8, 16, 32), label_sets=((0, 1), 5, 10), seed=3, device="cpu")
    assert len({c.n_train for c in cl}) > 1
    for c in cl:
        assert c.x_train.shape[-1] == c.image_size and set(c.y_test.tolist()) <= set(c.labels)
        assert 0 <= float(c.x_train.min()) and float(c.x_train.max()) <= 1 + 1e-6


@pytest.mark.parametrize("call,name", [
    (lambda s: extract_submodel(s, 0.0, 2), "width_rate"),
    (lambda s: extract_submodel(s, 1.5, 2), "width_rate"),
    (lambda s: extract_submodel(s, 0.5, 0), "depth"),
    (lambda s: extract_submodel(s, 0.5, 5), "depth"),
    (lambda s: extract_submodel(s, 0.5, 2.5), "depth"),
    (lambda s: extract_submodel(s, 0.5, 2, labels=()), "labels"),
    (lambda s: extract_submodel(s, 0.5, 2, labels=(1, 1)), "labels"),
    (lambda s: extract_submodel(s, 0.5, 2, labels=(10,)), "labels"),
    (lambda s: choose_submodel(TaskSpec(12, 5)), "image_size"),
    (lambda s: choose_submodel(TaskSpec(64, 5)), "image_size"),
    (lambda s: choose_submodel(TaskSpec(2, 5)), "image_size"),
    (lambda s: choose_submodel(TaskSpec(8, 0)), "n_classes"),
    (lambda s: choose_submodel(TaskSpec(8, 11)), "n_classes"),
    (lambda s: make_heterogeneous_clients(2, (8,), [()], device="cpu"), "label_sets"),
    (lambda s: make_heterogeneous_clients(2, (8,), [(3, 12)], device="cpu"), "label_sets"),
    (lambda s: make_heterogeneous_clients(2, (0,), (2,), device="cpu"), "sizes"),
    (lambda s: make_heterogeneous_clients(0, (8,), (2,), device="cpu"), "n_clients"),
    (lambda s: make_heterogeneous_clients(2, (8,), (2,), n_train=(5000,), device="cpu"), "n_train"),
    (lambda s: aggregate(s, [{}], []), "client_specs"),
    (lambda s: aggregate(s, [{"stem.bn.bias": torch.zeros(3)}], [ClientSpec(0.5, 1)]), "client_states"),
    (lambda s: aggregate(s, [{"nope": torch.zeros(3)}], [ClientSpec(0.5, 1)]), "client_states"),
    (lambda s: aggregate(s, [{}], [ClientSpec(0.5, 1, None, 0.0)]), "weight"),
    (lambda s: run_federated("fedsgd", [], 1), "method"),
    (lambda s: run_federated("fedavg", [], 1), "clients"),
    (lambda s: CommonModel((8,)), "channels"),
    (lambda s: bound_terms(METHODS["fedavg"], [], [], delta=1.0), "delta"),
])
def test_value_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call(_state())


def test_rounds_and_eval_every_are_checked(clients):
    with pytest.raises(ValueError, match="rounds"):
        run_federated("fedavg", clients, 0)
    with pytest.raises(ValueError, match="eval_every"):
        run_federated("fedavg", clients, 1, eval_every=0)


def test_missing_replies_rule(clients):
    """replies all True is the plain run; a client missing every round leaves the model as if it were absent from
    the aggregation (it does not train), and a round missed by everybody leaves the common model unchanged."""
    cfg = TrainConfig(local_steps=2, batch_size=8)
    M = len(clients)
    run = lambda replies, cl=clients: run_federated("scalablefl", cl, 2, config=cfg, replies=replies,
                                                    generator=torch.Generator().manual_seed(3))
    plain, ones = run(None), run(torch.ones(2, M, dtype=torch.bool))
    assert all(torch.equal(plain.common_state[k], ones.common_state[k]) for k in plain.common_state)
    nobody = torch.ones(2, M, dtype=torch.bool)
    nobody[1] = False
    first_only = run_federated("scalablefl", clients, 1, config=cfg, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(run(nobody).common_state[k], first_only.common_state[k]) for k in plain.common_state)
    with pytest.raises(ValueError, match="replies"):
        run(torch.ones(2, M + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="replies"):
        run(torch.ones(2, M))
