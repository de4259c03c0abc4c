"""Default argument objects for the command line, made without the cost of ``jsonargparse.lazy_instance``.

``lazy_instance`` finds its caller's module with :func:`inspect.stack`, which reads the source of every
frame on the stack and, for each frame of the import machinery, scans all of ``sys.modules``
(CPython issue 92041). A module default made while ``lightning_genaug.fit_cli`` is imported sits under
40-odd frames and about 3,000 modules: about 1 s a call on a loaded 2-core machine, five calls, most of
the start-up of ``lightning-genaug fit``. :func:`lazy_default` gives ``lazy_instance`` the one frame it
reads instead.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, TypeVar

from jsonargparse import lazy_instance

T = TypeVar("T")


def lazy_default(class_type: type[T], **kwargs: Any) -> T:
    """``jsonargparse.lazy_instance(class_type, **kwargs)``, registered in the caller's module as it would be.

    The object is built (``class_type(**kwargs)``) when first used, so each module built from a signature
    default gets a fresh one, and ``--print_config`` shows its ``class_path`` and ``init_args``.

    Example:
        >>> from lightning_genaug.augment import AugmentPipe
        >>> default = lazy_default(AugmentPipe, preset="bgc")
        >>> default.lazy_get_init_data()["class_path"]
        'lightning_genaug.AugmentPipe'
        >>> type(default).__name__
        'LazyInstance_AugmentPipe'
    """
    caller = sys._getframe(1)
    stack = inspect.stack
    # lazy_instance reads ``inspect.stack()[1][0]``: the frame that called it, here the caller's.
    inspect.stack = lambda context=1: [None, (caller,)]  # type: ignore[assignment,return-value]
    try:
        return lazy_instance(class_type, **kwargs)
    finally:
        inspect.stack = stack
