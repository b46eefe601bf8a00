"""Test helpers shared by tests/ and benchmarks/: real repositories, a fixed clock."""
