"""Pure verification helpers that run in the trusted process.

`literals` parses inputs and outputs without evaluating them, `equality` compares the parsed
values, `policy` is the static AST safety policy. Nothing here runs user code or imports the
sandbox, the engine, the API or the queue.
"""
