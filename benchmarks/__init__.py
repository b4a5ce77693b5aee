"""sparsecc.benchmarks."""
