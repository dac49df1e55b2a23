"""The gunicorn worker class: gunicorn's gevent worker, loaded in the worker.

Gunicorn imports the worker class in the master, and its gevent worker
module imports gevent (~6 MB the master would hold for its whole life and
never use: it only forks, watches and signals). This class is what the
master sees; in the forked worker, before anything else runs there, it
imports the real worker (serving/gevent_worker.py: gunicorn's GeventWorker, with a
shutdown that closes idle keep-alive connections) and becomes it. The master
keeps only gunicorn's base Worker, which is all the arbiter touches.
"""

from __future__ import annotations

from gunicorn.workers.base import Worker


class GeventWorker(Worker):
    """`worker_class = "crabllm_sync.serving.worker.GeventWorker"` (settings.py)."""

    def init_process(self) -> None:
        from crabllm_sync.serving.gevent_worker import GeventWorker as Real

        self.__class__ = Real
        Real.init_process(self)
