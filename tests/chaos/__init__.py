"""The fault test: real node processes, a seeded nemesis, a workload and a checker (see ``harness``)."""
