"""Hook for the cnnc column of the benchmark - to be filled in by the lead.

The benchmark calls exactly these four functions (in a child process whose
thread environment - OMP_NUM_THREADS etc. - is already set to the benchmark's
thread count T; read it from os.environ["OMP_NUM_THREADS"] if cnnc's kernels
take a thread count):

    available() -> (bool, reason)
        (True, "") once cnnc can compile and run the benchmark models;
        otherwise (False, "why"), shown in the table as "missing: why".

    train_step_fn(model_name, batch) -> callable
        Compile/load `model_name` ("mnist", "flowers" or "textcnn", specs as in
        bench/README.md), make a fixed synthetic batch of `batch` examples with
        the model's shapes (see bench/models.py INPUTS), and return a
        zero-argument callable that runs ONE optimiser step (forward, backward,
        update) on it and returns when the step is finished. Compilation and
        data creation happen here, before timing; only the callable is timed.

    infer_fn(model_name, batch) -> callable
        Same, for one forward pass in inference mode (no dropout).

    compile_times(model_name) -> dict
        Seconds spent per compilation stage, e.g.
        {"parse": 0.01, "codegen": 0.2, "cc": 3.1, "total": 3.3}; printed
        under the table and stored in the JSON. {} if not applicable.

Once available() returns True, run.py fills the cnnc column and the ratio
columns are cnnc / peer (throughput: > 1 means cnnc is faster; latency and
memory: < 1 means cnnc is better).
"""

REASON = "cnnc kernels not built yet"


def available():
    return False, REASON


def train_step_fn(model_name, batch):
    raise NotImplementedError(REASON)


def infer_fn(model_name, batch):
    raise NotImplementedError(REASON)


def compile_times(model_name):
    return {}
