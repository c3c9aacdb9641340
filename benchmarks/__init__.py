"""Benchmarks: `partnerpulse bench` (the pipeline beside raw aiokafka, Faust and recompute)."""
