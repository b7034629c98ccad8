"""`azr-verify bench --workload azr-step`: one AZR training step's verification, generated from
a seed (workload.py, programs.py), sent through the trainer's verifier to a served instance and
run by an in-process executor with the semantics of AZR's reference (reference.py), side by
side (bench.py)."""
