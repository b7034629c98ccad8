"""The chunk jobs' RQ function paths, as they travel in Redis (docs/design.md §5).

RQ stores the dotted path of a job's function and of its failure callback with the job, and a
worker imports them by that path. The paths name this module, where the functions lived before
they moved to queue/chunks.py; they stay as they were, so an API and workers of different
versions still agree on them (renaming them is a wire change between the API and the workers).
"""

from azr_verify.service.queue.chunks import (
    chunk_failed,
    run_chunk,
    run_code_chunk,
    run_code_chunk_failed,
    run_testcase_chunk,
    testcase_chunk_failed,
)

__all__ = [
    "chunk_failed",
    "run_chunk",
    "run_code_chunk",
    "run_code_chunk_failed",
    "run_testcase_chunk",
    "testcase_chunk_failed",
]
