"""AST -> typed graph -> C. The stages, in the order cnnc/pipeline.py runs them, and the
file that owns each (spec/ owns parse and desugar):

    check       shapes.py, layers.py    typed graph with diagnostics at spec spans (ops/ holds
                                        the op table: shape rule, vjp and kernel rule per op)
    grad_graph  autodiff.py             the graph extended with backward and loss-gradient nodes
    verify      verify.py               every node re-checked against its op's shape rule
    lower       lower.py                Program: kernels with every size resolved (kernel.py,
                                        ops/) and named (functions.py), epilogue fusion
                                        (fuse.py), the workspace plan (memory.py) and the
                                        entry points
    emit        emit.py, templates/     model.c, model.h, gemm_core.h and manifest.json
    build       build.py                cffi + the C compiler: the importable package

Modules import only from stages at or before their own (tests/compiler/test_imports.py)."""
