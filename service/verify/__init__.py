"""Pure verification helpers that run in the trusted process.

`literals` parses inputs and outputs without evaluating them, `equality` compares the parsed
values, `policy` is the static AST safety policy (`syntax` checks syntax without compiling,
`policy_scopes`, `policy_rules` and `policy_tables` are the azr allow-list). Nothing here runs
user code or imports the sandbox, the engine, the API or the queue.
"""
