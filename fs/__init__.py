"""fs: a production feature platform on Feast. Start with ``fs.Platform``."""

from fs.platform import Platform

__all__ = ["Platform"]
