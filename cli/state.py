"""Global options shared by every command, and the lazily built ``Platform``."""

from __future__ import annotations

from dataclasses import dataclass, field

from fs_platform.cli.output import Output


@dataclass
class State:
    repo: str | None = None
    env: str = "dev"
    as_json: bool = False
    verbose: int = 0
    wide: bool = False
    _platform: object = field(default=None, repr=False)

    @property
    def out(self) -> Output:
        return Output(self.as_json, self.wide)

    def output(self, as_json: bool = False) -> Output:
        """``out``, or JSON also when a command's own ``--json`` (``cli.args.JsonOpt``) asks for it."""
        return Output(self.as_json or as_json, self.wide)

    def close(self) -> None:
        """Close the platform if a command opened it (``fs_platform.cli.main`` calls this at the end)."""
        if self._platform is not None:
            self._platform.close()
            self._platform = None

    @property
    def platform(self):
        if self._platform is None:
            from fs_platform.platform import Platform

            self._platform = Platform(self.repo, env=self.env)
        return self._platform


def state(ctx) -> State:
    return ctx.find_root().obj
