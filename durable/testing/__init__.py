"""pgdurable's testing kit (docs/testing.md).

- :class:`TestEnv`: the App on a fresh schema with a worker and a virtual clock that
  skips time (``skip``, ``auto_skip``), and steps replaced by name (``mock_step``);
- :func:`drive`: a workflow run with no database at all, steps answered from a dict;
- :func:`replay`: an exported run (``app.export``) replayed against today's code.

The pytest plugin (``durable.testing.pytest_plugin``, registered as an entry point)
gives a ``durable_env`` fixture for an ``app`` fixture of yours.
"""

from __future__ import annotations

from ._drive import drive
from ._env import StepMock, TestEnv
from ._replay import replay

__all__ = ["StepMock", "TestEnv", "drive", "replay"]
