"""learnthy_nb.flower: DIFF2 as Flower apps. The server app driven in-process (a local grid that calls the client
app), on Flower's simulation engine and deployed as SuperLink + SuperNode processes gives the in-process engine's
iterates, with and without drop-outs; the drop-out rule; waiting for nodes; every ValueError path.

The Flower runs start in a subprocess with a hard timeout (a broken Ray install or a hung SuperNode must fail the
test, not hang it) and clean up the processes they start."""
import pytest
import torch

pytest.importorskip("flwr")

from flower_grid import LocalGrid, in_subprocess                          # noqa: E402
from learnthy_nb.flower import (Diff2Config, client_data, deploy_local, diff2_client_app, diff2_reference,  # noqa: E402
                                from_record, run_diff2_server, to_record, wait_for_nodes, write_app)


def grid(n_nodes, **kwargs):
    return LocalGrid(diff2_client_app, n_nodes, **kwargs)


SMALL = Diff2Config(n_samples=240, num_partitions=3, rounds=6, period=2, noise1=0.8, noise2=1.1)


@pytest.mark.parametrize("config", [SMALL, Diff2Config(n_samples=240, num_partitions=3, rounds=6, period=1),
                                    Diff2Config(n_samples=240, num_partitions=3, rounds=6, period=3, drop="1:0 4:2"),
                                    Diff2Config(n_samples=240, num_partitions=1, rounds=4, period=2, noise1=0.0,
                                                noise2=0.0, dtype="float32")])
def test_server_and_client_apps_equal_the_in_process_engine(config):
    history = run_diff2_server(grid(config.num_partitions), config)
    reference = diff2_reference(config)
    assert history.shape == (config.rounds + 1, 64) and history.dtype == config.torch_dtype
    atol = 1e-12 if config.dtype == "float64" else 1e-6
    assert torch.allclose(history, reference, atol=atol, rtol=0)
    assert float(history[-1].abs().max()) > 0                                # it moved


def test_a_dropped_reply_is_missing_from_the_sum_not_from_n():
    full = run_diff2_server(grid(3), SMALL)
    from dataclasses import replace
    dropped = run_diff2_server(grid(3), replace(SMALL, drop="0:1"))
    features, targets = client_data(SMALL, 1)
    from learnthy_nb.federated import LogisticNonconvex, client_step
    missing = client_step(LogisticNonconvex(SMALL.lam), torch.zeros(1, 64, dtype=torch.float64), None, features[None],
                          targets[None], torch.ones(1, len(targets), dtype=torch.bool),
                          torch.tensor([SMALL.clip1], dtype=torch.float64))[0, 0]
    # x1 = x0 - eta (sum / n + noise): the same noise draw, the missing share over the planned n = 240
    assert torch.allclose(dropped[1] - full[1], SMALL.eta * missing / 240, atol=1e-12)


def test_a_round_without_replies_stops_the_run():
    from dataclasses import replace
    with pytest.raises(RuntimeError, match="no client replied"):
        run_diff2_server(grid(3), replace(SMALL, drop="2:0 2:1 2:2"))


def test_unexpected_partitions_stop_the_run():
    with pytest.raises(RuntimeError, match="partitions"):
        run_diff2_server(grid(3, partitions=[0, 1, 1]), SMALL)
    with pytest.raises(ValueError, match="partitions"):                     # a node of another federation
        run_diff2_server(grid(3, num_partitions=4), SMALL)


def test_wait_for_nodes_times_out_on_an_empty_grid():
    empty = grid(0)
    with pytest.raises(TimeoutError, match="0 of 2 nodes"):
        wait_for_nodes(empty, 2, timeout=0.3)
    assert wait_for_nodes(grid(3), 2, timeout=0.3) == [100, 101, 102]


def test_records_round_trip_and_client_data():
    tensors = {"x": torch.randn(2, 5, dtype=torch.float64), "clip": torch.tensor([0.5, 2.0])}
    back = from_record(to_record(tensors))
    assert all(torch.equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype for k in tensors)
    parts = [client_data(SMALL, p) for p in range(3)]
    assert sum(len(t) for _, t in parts) == 240 and all(f.shape[1] == 64 for f, _ in parts)


def test_config_round_trips_through_the_run_config_and_the_app_file(tmp_path):
    assert Diff2Config.from_run_config({**SMALL.to_run_config(), "unknown-key": 1}) == SMALL
    app = write_app(tmp_path / "app", SMALL)
    try:
        import tomllib
    except ModuleNotFoundError:                                             # Python < 3.11 has no Flower either
        pytest.skip("tomllib")
    spec = tomllib.loads((app / "pyproject.toml").read_text())
    assert spec["tool"]["flwr"]["app"]["components"]["serverapp"] == "learnthy_nb.flower:diff2_server_app"
    assert Diff2Config.from_run_config(spec["tool"]["flwr"]["app"]["config"]) == SMALL


@pytest.mark.parametrize("kwargs,name", [
    (dict(n_samples=0), "n_samples"), (dict(n_samples=1798), "n_samples"), (dict(num_partitions=0), "num_partitions"),
    (dict(lam=-1.0), "lam"), (dict(rounds=0), "rounds"), (dict(period=0), "period"), (dict(eta=0.0), "eta"),
    (dict(clip1=0.0), "clip1"), (dict(clip2=-1.0), "clip2"), (dict(noise1=-0.1), "noise1"),
    (dict(noise2=float("nan")), "noise2"), (dict(timeout=0.0), "timeout"), (dict(connect_timeout=-1.0), "connect_timeout"),
    (dict(dtype="float16"), "dtype"), (dict(drop="1-2"), "drop"), (dict(drop="9:0"), "drop"), (dict(drop="0:3"), "drop"),
])
def test_bad_config_raises_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Diff2Config(**{"num_partitions": 3, **kwargs})


def test_deploy_local_checks_its_arguments():
    with pytest.raises(ValueError, match="port"):
        deploy_local(SMALL, port=80)
    with pytest.raises(ValueError, match="timeout"):
        deploy_local(SMALL, timeout=0)


@pytest.mark.flower
def test_flower_simulation_equals_the_in_process_engine():
    out = in_subprocess("""
        import json, logging
        for name in ("flwr", "ray"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from learnthy_nb.flower import Diff2Config, diff2_reference, simulate_diff2
        config = Diff2Config(n_samples=240, num_partitions=3, rounds=5, period=2, drop="2:1")
        history = simulate_diff2(config)
        print(json.dumps({"gap": float((history - diff2_reference(config)).abs().max()), "rounds": history.shape[0]}))
    """, timeout=300)
    assert out["rounds"] == 6 and out["gap"] <= 1e-12


@pytest.mark.flower
def test_deployment_of_superlink_and_supernodes_equals_the_in_process_engine():
    """A SuperLink and two SuperNodes as separate processes over localhost, launched with `flwr run` (free
    ports, a temporary FLWR_HOME); a client drops out of one round."""
    out = in_subprocess("""
        import json
        from learnthy_nb.flower import Diff2Config, deploy_local, diff2_reference
        config = Diff2Config(n_samples=240, num_partitions=2, rounds=3, period=2, drop="1:1")
        history, log = deploy_local(config, timeout=360)
        print(json.dumps({"gap": float((history - diff2_reference(config)).abs().max()), "rounds": history.shape[0],
                          "started": "Successfully started run" in log}))
    """, timeout=420)
    assert out["started"] and out["rounds"] == 4 and out["gap"] <= 1e-12


def test_record_engine_claims_one_claim_per_engine():
    from learnthy_nb.flower import ENGINE_DESCRIPTIONS, record_engine_claims
    claims = record_engine_claims("demo", {"simulation": 0.0, "deployment": 2e-10}, statement="a run on {where}",
                                  tolerance=1e-9, section="flower-measured")
    assert set(claims) == {"simulation", "deployment"}
    assert claims["deployment"].key == "demo.deployment_equals_engine" and claims["deployment"].verdict == "reproduced"
    assert claims["simulation"].statement == "a run on " + ENGINE_DESCRIPTIONS["simulation"]
    assert record_engine_claims("demo", {"simulation": 1e-3}, statement="on {where}", tolerance=1e-9,
                                section="flower-measured")["simulation"].verdict == "not reproduced"
    for kw, name in ((dict(gaps={"cloud": 0.0}), "gaps"), (dict(statement="no placeholder"), "statement"),
                     (dict(tolerance=0.0), "tolerance")):
        args = {**dict(prefix="demo", gaps={"simulation": 0.0}, statement="on {where}", tolerance=1e-9,
                       section="flower-measured"), **kw}
        with pytest.raises(ValueError, match=name):
            record_engine_claims(**args)
