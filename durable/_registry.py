"""The registry: what ``@app.step()`` and ``@app.workflow()`` register, and the decoding
of stored values by the registered functions' type annotations."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from ._codec import Codec, type_hints
from ._errors import WorkflowNotFound
from ._models import Queue, RetryPolicy, seconds
from ._schedules import Schedule
from .replay import StepCall, current_context

__all__ = ["Registry", "StepDef", "StepOptions", "WorkflowDef"]

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_RETRY = RetryPolicy()
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class StepDef:
    """A registered step."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    timeout: float | None
    result_annotation: Any
    is_async: bool = False  # an ``async def``: the worker awaits it on its event loop
    #: ``@app.transaction()``: the function's first parameter gets a connection, and the
    #: worker appends its result in the transaction the function ran in
    transactional: bool = False


@dataclass(frozen=True, slots=True)
class StepOptions:
    """What the step wrapper puts in ``StepCall.options``: the registered step and the run
    whose workflow called it (the worker keys a step's attempts by run and position)."""

    step: StepDef
    run_id: str
    #: the registry's mocked steps (``TestEnv.mock_step``), looked up when an attempt
    #: runs, so a mock set while a step waits for its retry applies to that retry
    mocked: Mapping[str, StepDef] = field(default_factory=dict)

    @property
    def current(self) -> StepDef:
        """The step an attempt runs now: the mock if one replaces it, else the step."""
        mocked = self.mocked
        return mocked.get(self.step.name, self.step) if mocked else self.step


@dataclass(frozen=True)
class WorkflowDef:
    """A registered workflow."""

    name: str
    fn: Callable[..., Any]
    timeout: float | None
    param_annotations: tuple[Any, ...]
    result_annotation: Any
    #: the queue its runs go to unless ``start(queue=...)`` says otherwise
    queue: str | None = None

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    def check_args(self, args: tuple[Any, ...]) -> None:
        """Raise TypeError, naming the parameters, if ``args`` do not fit the workflow."""
        signature = self._signature
        try:
            signature.bind(None, *args)  # None stands for the Context
        except TypeError as exc:
            params = [_describe(p) for p in list(signature.parameters.values())[1:]]
            wanted = f"({', '.join(params)}) after the context" if params else "no arguments"
            raise TypeError(
                f"wrong arguments for workflow {self.name!r}: {exc}; it takes {wanted}"
            ) from None


class Registry:
    """The workflows and steps of one App, and the codec their values go through."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.workflows: dict[str, WorkflowDef] = {}
        self.steps: dict[str, StepDef] = {}
        self.queues: dict[str, Queue] = {}
        self.schedules: dict[str, Schedule] = {}
        #: steps a test env replaced (``TestEnv.mock_step``): what a step call runs instead
        self.mocked: dict[str, StepDef] = {}

    def queue(self, queue: Queue) -> Queue:
        """Register a queue's declaration (a later one of the same name replaces it)."""
        self.queues[queue.name] = queue
        return queue

    def served_queues(self) -> list[str]:
        """The queues this registry declares or its workflows default to."""
        names = set(self.queues)
        names.update(wf.queue for wf in self.workflows.values() if wf.queue is not None)
        return sorted(names)

    # -- decorators --------------------------------------------------------------------------

    def step(
        self,
        name: str | None = None,
        *,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        timeout: float | timedelta | None = None,
    ) -> Callable[[F], F]:
        """See :meth:`durable.App.step`."""
        if callable(name) and not isinstance(name, str):
            raise TypeError("use @app.step() with parentheses")
        timeout_s = seconds(timeout, "step timeout")
        return self._step_decorator("@app.step", name, retry, timeout_s, transactional=False)

    def transaction(
        self, name: str | None = None, *, retry: RetryPolicy | None = _DEFAULT_RETRY
    ) -> Callable[[F], F]:
        """See :meth:`durable.App.transaction`."""
        if callable(name) and not isinstance(name, str):
            raise TypeError("use @app.transaction() with parentheses")
        return self._step_decorator("@app.transaction", name, retry, None, transactional=True)

    def _step_decorator(
        self,
        what: str,
        name: str | None,
        retry: RetryPolicy | None,
        timeout_s: float | None,
        *,
        transactional: bool,
    ) -> Callable[[F], F]:
        def decorate(fn: F) -> F:
            if not callable(fn) or inspect.isgeneratorfunction(fn):
                raise TypeError(
                    f"{what} needs an ordinary function; {fn!r} is a generator function "
                    "(workflows use @app.workflow)"
                )
            if inspect.isasyncgenfunction(fn):
                raise TypeError(
                    f"{what} needs an ordinary or an async function; {fn.__qualname__} is "
                    "an async generator function: return the values (a list) instead"
                )
            if transactional and not _takes_a_first_argument(fn):
                raise TypeError(
                    f"{what} needs a function whose first parameter is the connection; "
                    f"{fn.__qualname__} takes no positional parameter"
                )
            step_name = name or fn.__qualname__
            _refuse_second(self.steps.get(step_name), "step", step_name, fn)
            definition = StepDef(
                name=step_name,
                fn=fn,
                retry=retry if retry is not None else RetryPolicy(max_attempts=1),
                timeout=timeout_s,
                result_annotation=type_hints(fn).get("return", inspect.Parameter.empty),
                is_async=inspect.iscoroutinefunction(fn),
                transactional=transactional,
            )
            self.steps[step_name] = definition
            mocked = self.mocked

            def call(*args: Any, **kwargs: Any) -> Any:
                ctx = current_context()
                if ctx is None:
                    return fn(*args, **kwargs)  # an async step: the coroutine, as without us
                options = StepOptions(definition, ctx.run_id, mocked)
                command = StepCall(step_name, args, kwargs, options)
                ctx._created(command)
                return command

            wrapper: Any = _AsyncStep(fn, call) if definition.is_async else call
            if wrapper is call:
                functools.update_wrapper(wrapper, fn)
            wrapper.durable_step = definition
            wrapper.durable_name = step_name
            return typing.cast(F, wrapper)

        return decorate

    def workflow(
        self,
        name: str | None = None,
        *,
        timeout: float | timedelta | None = None,
        queue: str | None = None,
    ) -> Callable[[F], F]:
        """See :meth:`durable.App.workflow`."""
        if callable(name) and not isinstance(name, str):
            raise TypeError("use @app.workflow() with parentheses")
        timeout_s = seconds(timeout, "workflow timeout")
        if queue is not None and (not isinstance(queue, str) or not queue.strip()):
            raise ValueError(f"queue must be a queue's name (a non-empty str), not {queue!r}")

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                raise TypeError(
                    f"@app.workflow needs a generator function; {fn.__qualname__} is async. "
                    "Workflows are plain generators that yield commands; put async work in "
                    "an async step (@app.step() on an async def) and yield it"
                )
            if not inspect.isgeneratorfunction(fn):
                raise TypeError(
                    f"@app.workflow needs a generator function (one that yields commands) "
                    f"whose first parameter is the durable.Context; {fn!r} is not one"
                )
            params = list(inspect.signature(fn).parameters.values())
            if not params or params[0].kind not in _POSITIONAL:
                raise TypeError(
                    f"workflow {fn.__qualname__} must take the durable.Context as its "
                    "first positional parameter"
                )
            wf_name = name or fn.__qualname__
            _refuse_second(self.workflows.get(wf_name), "workflow", wf_name, fn)
            hints = type_hints(fn)
            annotations = tuple(
                hints.get(p.name, inspect.Parameter.empty)
                for p in params[1:]
                if p.kind in _POSITIONAL
            )
            self.workflows[wf_name] = WorkflowDef(
                name=wf_name,
                fn=fn,
                timeout=timeout_s,
                param_annotations=annotations,
                result_annotation=_generator_return(hints.get("return", inspect.Parameter.empty)),
                queue=queue,
            )
            fn.durable_name = wf_name  # type: ignore[attr-defined]
            fn.durable_workflow = self.workflows[wf_name]  # type: ignore[attr-defined]
            return fn

        return decorate

    # -- lookups -----------------------------------------------------------------------------

    def workflow_def(self, workflow: Any) -> WorkflowDef:
        """The registered workflow for a decorated function or a name."""
        name = workflow if isinstance(workflow, str) else getattr(workflow, "durable_name", None)
        if name is None:
            raise TypeError(
                f"{workflow!r} is not a workflow; decorate it with @app.workflow() "
                "or pass its registered name"
            )
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise WorkflowNotFound(
                f"unknown workflow {name!r} (registered: {known}); register it with "
                "@app.workflow() in the code this App runs",
                workflow=name,
            ) from None

    # -- decoding ----------------------------------------------------------------------------

    def decode_args(self, workflow: str, raw: list[Any]) -> tuple[Any, ...]:
        """Workflow arguments from the log, typed by the workflow's annotations."""
        wf = self.workflows.get(workflow)
        annotations: tuple[Any, ...] = wf.param_annotations if wf else ()
        out = []
        for i, value in enumerate(raw):
            ann = annotations[i] if i < len(annotations) else inspect.Parameter.empty
            out.append(self.codec.decode(value, ann))
        return tuple(out)

    def decode_value(self, kind: str, name: str, raw: Any) -> Any:
        """The engine's decode hook (docs/internals.md, section 3.2)."""
        if kind == "args":
            return self.decode_args(name, raw)
        if kind == "step":
            step = self.steps.get(name)
            return self.codec.decode(
                raw, step.result_annotation if step else inspect.Parameter.empty
            )
        if kind == "child":
            return self.decode_result(name, raw)
        return self.codec.decode(raw)

    def decode_result(self, workflow: str, raw: Any) -> Any:
        """A run's result, typed by its workflow's return annotation."""
        wf = self.workflows.get(workflow)
        return self.codec.decode(raw, wf.result_annotation if wf else inspect.Parameter.empty)


def _takes_a_first_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return True
    return bool(params) and params[0].kind in (*_POSITIONAL, inspect.Parameter.VAR_POSITIONAL)


class _AsyncStep:
    """The wrapper of an ``async def`` step: a plain (not ``async``) callable, since inside
    a running workflow a call must return the ``StepCall`` itself, that looks like the
    coroutine function it wraps, so ``inspect.iscoroutinefunction`` (and frameworks that
    ask it) see a coroutine function, as without the decorator.

    Python 3.11 has no ``inspect.markcoroutinefunction``, and its ``iscoroutinefunction``
    looks at the code flags of functions and of function-like objects only; a plain
    ``def`` wrapper cannot carry the flag without becoming a coroutine function itself.
    So this object exposes the wrapped function's ``__code__`` (and the other attributes
    ``inspect`` checks for a function-like object) and binds like a function (``__get__``).
    """

    def __init__(self, fn: Callable[..., Any], call: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self._call = call
        self.__code__ = fn.__code__
        self.__defaults__ = getattr(fn, "__defaults__", None)
        self.__kwdefaults__ = getattr(fn, "__kwdefaults__", None)
        mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
        if mark is not None:
            mark(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    def __repr__(self) -> str:
        return f"<async step {getattr(self, '__qualname__', '?')}>"


def _refuse_second(existing: StepDef | WorkflowDef | None, kind: str, name: str, fn: Any) -> None:
    if existing is None or existing.fn is fn:
        return
    raise ValueError(
        f"{kind} name {name!r} is taken by {_where(existing.fn)}; {_where(fn)} cannot be "
        f"registered under it too: pass @app.{kind}(name=...) a name of its own"
    )


def _where(fn: Any) -> str:
    module = getattr(fn, "__module__", "?")
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def _describe(param: inspect.Parameter) -> str:
    """``name: type`` of a parameter, as written in the source."""
    text = param.name
    if param.kind is inspect.Parameter.VAR_POSITIONAL:
        text = "*" + text
    annotation = param.annotation
    if annotation is not inspect.Parameter.empty:
        shown = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        text += f": {shown or annotation}"
    if param.default is not inspect.Parameter.empty:
        text += f" = {param.default!r}"
    return text


def _generator_return(annotation: Any) -> Any:
    """The result type of a workflow: ``R`` of ``Generator[Y, S, R]``, else as written."""
    origin = typing.get_origin(annotation)
    if origin in (collections.abc.Generator, typing.Generator):
        args = typing.get_args(annotation)
        return args[2] if len(args) == 3 else inspect.Parameter.empty
    if origin in (collections.abc.Iterator, collections.abc.Iterable):
        return inspect.Parameter.empty
    return annotation
