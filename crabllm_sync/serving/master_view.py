"""What the gunicorn master reads of the config, validated without importing it."""

from __future__ import annotations

import json
import os
import traceback


def master_view(path: str) -> tuple[str, int]:
    """(listen, shutdown_timeout) of the config at `path`, fully validated.

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
    return answer["listen"], int(answer["timeout"])
