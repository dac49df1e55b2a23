"""The gunicorn worker class: gunicorn's gevent worker, loaded in the worker.

Gunicorn imports the worker class in the master, and its gevent worker
module imports gevent (~6 MB the master would hold for its whole life and
never use: it only forks, watches and signals). This class is what the
master sees; in the forked worker, before anything else runs there, it
imports gunicorn's GeventWorker and becomes it, so from then on the worker is
exactly `-k gevent` (monkey-patching, the server, signals). The master keeps
only gunicorn's base Worker, which is all the arbiter touches.
"""

from __future__ import annotations

from gunicorn.workers.base import Worker


class GeventWorker(Worker):
    """`worker_class = "crabllm_sync.worker.GeventWorker"` (serving.py)."""

    def init_process(self) -> None:
        from gunicorn.workers.ggevent import GeventWorker as Real

        # What AsyncWorker.__init__ adds to Worker.__init__, which ran in the
        # master with this class.
        self.worker_connections = self.cfg.worker_connections
        self.__class__ = Real
        Real.init_process(self)
