"""The parts of data-parallel training that need no MPI: how a batch is split over ranks and
the command line `--workers` hands to mpiexec."""
import numpy as np
import pytest

from cnnc.runtime.distributed import data_digest, shard
from cnnc.workers import rank_argv


@pytest.mark.parametrize("n", [0, 1, 5, 31, 32, 64, 65])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_cover_the_batch_once_and_differ_by_at_most_one(n, size):
    parts = [shard(n, r, size) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))            # contiguous, disjoint
    lengths = [stop - start for start, stop in parts]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)                       # the first ranks get the extra
    assert [len(p) for p in np.array_split(np.arange(n), size)] == lengths


def test_rank_command_drops_workers_and_adds_threads():
    argv = ["--debug", "train", "a.cnn", "--workers", "2", "--epochs", "3", "--workers=2"]
    assert rank_argv(argv, 1) == ["--debug", "train", "a.cnn", "--epochs", "3", "--threads", "1"]
    assert rank_argv(["train", "a.cnn", "--threads", "2", "--workers", "4"], 1) == \
        ["train", "a.cnn", "--threads", "2"]


def test_data_digest_sees_values_shapes_and_names():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = data_digest({"x": x})
    assert base == data_digest({"x": x.copy()})
    y = x.copy()
    y[2, 3] += 1
    assert len({base, data_digest({"x": y}), data_digest({"x": x.reshape(4, 3)}),
                data_digest({"z": x})}) == 4
