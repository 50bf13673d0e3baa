"""MBE runner: retrieval, zero-shot classification and attribute tasks for any embedder."""
