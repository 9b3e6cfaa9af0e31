"""learnthy_nb.scalablefl_flower: ScalableFL (and every baseline configuration) as Flower apps. The server app driven
through a local grid, on the simulation engine and deployed as SuperLink + SuperNode processes ends with the
in-process engine's common model and accuracies, with and without drop-outs; local state stays on the clients;
every ValueError path."""
from dataclasses import replace

import pytest
import torch

pytest.importorskip("flwr")

from flower_grid import LocalGrid, in_subprocess                          # noqa: E402
from learnthy_nb.scalablefl_flower import (ScalableFLConfig, run_scalablefl_server,  # noqa: E402
                                           scalablefl_client_app, scalablefl_reference)

SMALL = ScalableFLConfig(num_partitions=4, sizes="8 16", label_sets="0,1 5 10", n_train="12 20 16 24", n_test=10,
                         rounds=3, local_steps=2, batch_size=8)


def _gap(a: dict, b: dict) -> float:
    common = max(float((a["common"][k] - b["common"][k]).abs().max()) for k in a["common"])
    return max(common, float((a["test_accuracy"] - b["test_accuracy"]).abs().max()))


@pytest.mark.parametrize("method", ["scalablefl", "fedavg", "fedbn", "fedper", "partialfed", "heterofl", "depthfl",
                                   "local"])
def test_every_method_on_the_apps_equals_the_in_process_engine(method):
    config = replace(SMALL, method=method)
    result = run_scalablefl_server(LocalGrid(scalablefl_client_app, 4), config)
    assert _gap(result, scalablefl_reference(config)) == 0.0
    assert result["test_accuracy"].shape == (4,) and bool(((0 <= result["test_accuracy"]) & (result["test_accuracy"] <= 1)).all())


@pytest.mark.parametrize("drop", ["1:2", "0:0", "0:1 2:3"])
def test_drop_outs_equal_the_in_process_rule(drop):
    """A missing reply: that client neither trains nor is averaged (round 0 included: it gets its local entries
    when it first takes part)."""
    config = replace(SMALL, drop=drop)
    result = run_scalablefl_server(LocalGrid(scalablefl_client_app, 4), config)
    assert _gap(result, scalablefl_reference(config)) == 0.0
    assert _gap(result, scalablefl_reference(SMALL)) > 0


def test_local_entries_stay_on_the_clients():
    grid = LocalGrid(scalablefl_client_app, 4)
    run_scalablefl_server(grid, SMALL)
    for ctx in grid.contexts:
        local = ctx.state["local"]
        assert len(local) > 0 and all(".bn." in k or k.startswith("head") for k in local.keys())


def test_a_round_without_replies_stops_the_run():
    with pytest.raises(RuntimeError, match="no client replied"):
        run_scalablefl_server(LocalGrid(scalablefl_client_app, 4), replace(SMALL, drop="1:0 1:1 1:2 1:3"))


@pytest.mark.parametrize("kwargs,name", [
    (dict(method="fedsgd"), "method"), (dict(num_partitions=0), "num_partitions"), (dict(sizes="8 x"), "sizes"),
    (dict(label_sets=""), "label_sets"), (dict(n_train="1 y"), "n_train"), (dict(n_test=0), "n_test"),
    (dict(data_seed=-1), "data_seed"), (dict(seed=-1), "seed"), (dict(rounds=0), "rounds"),
    (dict(timeout=0.0), "timeout"), (dict(connect_timeout=0.0), "connect_timeout"), (dict(drop="9:0"), "drop"),
])
def test_bad_config_raises_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ScalableFLConfig(**kwargs)


@pytest.mark.flower
def test_simulation_and_deployment_equal_the_in_process_engine():
    """Ray simulation (4 virtual nodes) and a SuperLink + 2 SuperNodes deployment over localhost (ports the OS reports free,
    a temporary FLWR_HOME), each with a client missing a round."""
    out = in_subprocess("""
        import json, logging
        from dataclasses import replace
        for name in ("flwr", "ray"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from learnthy_nb.flower import deploy_local, simulate
        from learnthy_nb.scalablefl_flower import (ScalableFLConfig, run_scalablefl_server, scalablefl_client_app,
                                                   scalablefl_reference)
        def gap(a, b):
            common = max(float((a["common"][k] - b["common"][k]).abs().max()) for k in a["common"])
            return max(common, float((a["test_accuracy"] - b["test_accuracy"]).abs().max()))
        config = ScalableFLConfig(num_partitions=4, sizes="8 16", label_sets="0,1 5 10", n_train="12 20 16 24",
                                  n_test=10, rounds=2, local_steps=2, batch_size=8, drop="1:2")
        sim = simulate(run_scalablefl_server, scalablefl_client_app, config)
        small = replace(config, num_partitions=2, n_train="12 20", drop="1:1")
        dep, log = deploy_local(small, timeout=360,
                                serverapp="learnthy_nb.scalablefl_flower:scalablefl_server_app",
                                clientapp="learnthy_nb.scalablefl_flower:scalablefl_client_app")
        print(json.dumps({"sim": gap(sim, scalablefl_reference(config)), "dep": gap(dep, scalablefl_reference(small))}))
    """, timeout=480)
    assert out["sim"] == 0.0 and out["dep"] == 0.0
