from benchmarks.perf.moe import bench_case, run


def test_bench_case_reports_both_timings():
    row = bench_case(16, 24, "guided", tokens=64, num_experts=4, top_k=2, repeats=1, backward=True,
                     guided_share=0.5)
    assert row["pass"] == "fwd+bwd" and row["dense_ms"] > 0 and row["moe_ms"] > 0
    assert row["ratio"] == row["moe_ms"] / row["dense_ms"]


def test_run_returns_the_worst_ratio():
    result = run(tokens=32, repeats=1, sizes={"a": (16, 24), "b": (8, 8)})
    assert len(result["rows"]) == 8 and result["meaning"]
    assert result["ratio"] == max(r["ratio"] for r in result["rows"])
