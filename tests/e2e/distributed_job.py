"""A data-parallel job the distributed tests start under mpiexec (not a test module).

    python distributed_job.py BUILD_DIR OUT_DIR MODE

MODE "evaluate" (or "state": digits with batch norm, also printing how many distinct states the
ranks hold and how far the moving mean moved): fit, then print evaluate() with distributed=True and without, and how many
distinct params the ranks hold, on rank 0.
MODE "kill" / "raise": rank 1 kills itself (SIGKILL) or raises in epoch 2, after writing the
time to OUT_DIR/failed_at; the job must then end on every rank."""
import os
import signal
import sys
import time

import cnnc
from cnnc.runtime import Callback, load_digits
from cnnc.runtime.distributed import data_digest, world

build, out, mode = sys.argv[1:4]
group = world()
DIGITS = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "digits.cnn")
if mode == "state":          # digits with a batch norm after each conv: state on every rank
    with open(DIGITS) as f:
        spec = f.read().replace('activation=relu)          # 8x8x32', ')\n  "bn1": batch_norm()\n  relu()') \
                       .replace('activation=relu)          # 4x4x64', ')\n  "bn2": batch_norm()\n  relu()')
    assert spec.count("batch_norm") == 2
    model = cnnc.compile(spec, out_dir=build, filename="digits_bn.cnn").Model(seed=0)
else:
    model = cnnc.compile(DIGITS, out_dir=build).Model(seed=0)
model.threads = 1
x, y, x_te, y_te = load_digits(seed=0)
x, x_te = x.reshape(-1, 8, 8, 1), x_te.reshape(-1, 8, 8, 1)


class Fail(Callback):
    def on_batch_end(self, batch, logs=None):
        if mode in ("kill", "raise") and group.rank == 1 and self.run.epoch == 1 and batch == 3:
            with open(os.path.join(out, "failed_at"), "w") as f:
                f.write(repr(time.time()))
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("a failure on purpose")


model.fit(x, y, epochs=1 if mode in ("evaluate", "state") else 30, batch_size=64, verbose=0, callbacks=[Fail()],
          checkpoint=os.path.join(out, "job.npz"), distributed=True)
together = model.evaluate(x_te, y_te, batch_size=50, distributed=True)
alone = model.evaluate(x_te, y_te, batch_size=50)
digests = group.comm.allgather(data_digest(model.params))      # every rank holds the same bytes
if mode == "state":
    states = group.comm.allgather(data_digest(model.state))
    if group.rank == 0:
        moved = float(abs(model.state["bn1/moving_mean"]).max())
        print("state", len(set(states)), "distinct on", len(states), "ranks; moved", moved)
if group.rank == 0:
    print("together", together["loss"], together["accuracy"])
    print("alone", alone["loss"], alone["accuracy"])
    print("params", len(set(digests)), "distinct on", len(digests), "ranks")
