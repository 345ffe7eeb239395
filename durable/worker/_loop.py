"""The worker's asyncio event loop, in a thread of its own, where async steps are awaited."""

from __future__ import annotations

import asyncio
import logging
import threading

__all__ = ["EventLoopThread"]

log = logging.getLogger("durable.worker")

CLOSE_GRACE = 5.0  # seconds the loop gives tasks still running at shutdown to end


class EventLoopThread:
    """One event loop running forever in a daemon thread, from :meth:`start` to :meth:`stop`.

    Nothing but async steps runs on it (``StepRunner`` submits them with
    ``asyncio.run_coroutine_threadsafe``), so its latency is the steps' own: a step that
    blocks (``time.sleep``, a sync HTTP call) delays every async step of the worker.
    """

    def __init__(self, name: str = "durable-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = CLOSE_GRACE + 5.0) -> None:
        """Stop the loop, cancelling what still runs on it (nothing awaits it any more once
        the pool is drained: an async step that ignored its cancellation), and close it."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        elif self._thread.ident is None:
            self.loop.close()  # never started

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        except BaseException:  # pragma: no cover - the steps' code is guarded
            log.exception("the worker's event loop stopped unexpectedly")
        finally:
            try:
                self._cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            except BaseException:  # pragma: no cover - best effort at shutdown
                log.exception("closing the worker's event loop failed")
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @staticmethod
    def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=CLOSE_GRACE))
        for task in pending:
            log.warning("an async step still runs at shutdown, abandoned: %r", task)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("an async step ended at shutdown with %r", task.exception())
