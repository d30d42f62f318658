"""Benchmarks of cnnc against PyTorch, TensorFlow and ONNX Runtime.

Benchmark-only code: nothing in cnnc imports this package, and the peer
frameworks it uses are never runtime dependencies of cnnc. See README.md.
"""
