"""Pure verification helpers that run in the trusted process.

`literals` parses inputs and outputs without evaluating them, `equality` compares the parsed
values, `policy` is the static AST safety policy (`syntax` checks syntax without compiling,
`policy_scopes`, `policy_rules` and `policy_tables` are the azr allow-list), `run_outcome` is
what one execution did as the trusted side decided it, and `determinism` folds an item's runs
into one verdict. Nothing here runs user code or imports the sandbox, the engine, the API or
the queue.
"""
