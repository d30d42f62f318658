"""Plain-NumPy reference implementation of the cnnc ops: the test oracle."""
