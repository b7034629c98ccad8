"""The workload of `azr-verify bench --workload azr-step`: one AZR training step's
verification, generated from a seed (workload.py, programs.py), and an in-process executor with
the semantics of AZR's reference (reference.py). The driver that runs both side by side, the
second through the trainer's verifier against a served instance, is `bench/azr_step.py`."""
