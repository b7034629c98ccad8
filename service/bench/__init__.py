"""Every `azr-verify bench` driver, one module per workload (docs/design.md §3, §8).

`rows` is the one result row they share; `served` starts the processes the benchmarks of a
served instance measure (`azr-verify serve`, `azr-verify worker`, a throwaway redis-server).
"""
