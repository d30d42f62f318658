"""The cluster model in bench/scaling.py against the arithmetic done by hand."""
import pytest

from bench.scaling import cluster_model


def test_ring_allreduce_model():
    # 8 hosts at 10 Gb/s, 20 MB: 2*7/8 * 20e6 / 1.25e9 = 28 ms of allreduce per step.
    # At 10 ms per example and a global batch of 64: 80 ms of compute, efficiency 80/108.
    rows = {(g, n): (eff, need) for g, n, eff, need in
            cluster_model(0.010, 20_000_000, hosts=(8,), gbps=(10,), batch=64)}
    eff, need = rows[(10, 8)]
    assert eff == pytest.approx(80 / 108)
    assert need == 202                  # 0.010 * B / 8 >= 9 * 0.028  ->  B >= 201.6
    # a model that needs no batch to hide its allreduce still puts one example on every host
    (_, _, _, need), = cluster_model(1.0, 4, hosts=(64,), gbps=(100,))
    assert need == 64
