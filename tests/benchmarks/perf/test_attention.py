from benchmarks.perf.attention import bench_shape, run


def test_bench_shape_times_both_kernels():
    row = bench_shape(2, 2, 8, 16, repeats=1)
    assert row["shape"] == [2, 2, 8, 16] and row["default_ms"] > 0 and row["chosen_ms"] > 0
    assert row["speedup"] == row["default_ms"] / row["chosen_ms"]


def test_ratio_is_the_worst_short_shape_and_ignores_long_ones():
    result = run(repeats=1, shapes={"a": (2, 2, 8, 16), "b": (2, 2, 16, 16), "long": (1, 1, 300, 16)})
    short = [r["speedup"] for r in result["rows"] if r["name"] != "long"]
    assert len(result["rows"]) == 3 and result["ratio"] == min(short) and result["meaning"]
