"""What the gunicorn master reads of the config, validated without importing it."""

from __future__ import annotations

import json
import os
import sys
import traceback

# Memory storage is each process's own: with several workers these are not
# shared (the admin key API refuses to run at all: storage/memory.py).
MEMORY_WORKERS_WARNING = (
    'crabllm-sync: warning: [storage] kind = "memory" with {n} workers: rate '
    "limits, budgets, the response cache, breaker state and stored responses are "
    "each worker's own, and the admin key API is refused; use sqlite or redis "
    "storage (or one worker) to share them"
)


def master_view(path: str, workers: int = 1) -> tuple[str, int]:
    """(listen, shutdown_timeout) of the config at `path`, fully validated.

    What the gateway cannot do with this many `workers` (memory storage) is
    printed as a warning on stderr.

    Validation runs in a forked child that exits after answering, so the
    gunicorn master never imports pydantic or the config models (~10 MB it
    would hold for its whole life and never use). A bad config raises
    SystemExit with the same one-line message `crabllm-sync check` prints.
    Call it only while the process has one thread (gunicorn's config load).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: validate, answer, leave without cleanup
        os.close(read)
        code = 0
        try:
            from crabllm_sync.config import ConfigError, load_config

            try:
                config = load_config(path)
                answer = {"listen": config.listen, "timeout": config.shutdown_timeout}
                if config.storage.kind == "memory" and workers > 1:
                    answer["warning"] = MEMORY_WORKERS_WARNING.format(n=workers)
            except ConfigError as exc:
                answer = {"error": f"crabllm-sync: {exc}"}
            os.write(write, json.dumps(answer).encode())
        except BaseException:  # noqa: BLE001 - must reach os._exit
            code = 1
            traceback.print_exc()  # a bug, not a bad config: show it
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data or os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"crabllm-sync: could not read the config {path}")
    answer = json.loads(data)
    if "error" in answer:
        raise SystemExit(answer["error"])
    if "warning" in answer:
        print(answer["warning"], file=sys.stderr)
    return answer["listen"], int(answer["timeout"])
