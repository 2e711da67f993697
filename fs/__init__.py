"""fs: a production feature platform on Feast. Start with ``fs.Platform``."""

__all__ = ["Platform"]


def __getattr__(name: str):
    # Lazy: importing Feast costs seconds; `fs --help` and small helpers should not pay for it.
    if name == "Platform":
        from fs_platform.platform import Platform

        return Platform
    raise AttributeError(name)
