"""Quantities as people type them: CPU in cores (`0.5`) or millicores (`500m`), memory as `128M`, `1G`, `1.5Gi`,
durations as `30d`, `12h`, `90m`, `45s`."""

import re

import click

_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?", re.IGNORECASE)
_MEMORY_TO_MIB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "": 1}
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Cpu(click.ParamType):
    name = "CPU"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip().lower()
        try:
            millicores = float(text[:-1]) if text.endswith("m") else float(text) * 1000
        except ValueError:
            self.fail(f"{value!r} is not a CPU amount: give cores (0.5) or millicores (500m)", param, ctx)
        if millicores != millicores or millicores <= 0:  # NaN or not positive
            self.fail(f"{value!r} must be more than zero", param, ctx)
        return round(millicores)


class Memory(click.ParamType):
    name = "MEMORY"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        match = _MEMORY.fullmatch(str(value).strip())
        if not match:
            self.fail(f"{value!r} is not a memory size: give it as 128M, 1G or 512 (MiB)", param, ctx)
        mib = float(match.group(1)) * _MEMORY_TO_MIB[match.group(2).upper()]
        if mib < 1:
            self.fail(f"{value!r} is less than 1 MiB", param, ctx)
        return round(mib)


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        match = _DURATION.fullmatch(str(value).strip().lower())
        if not match or int(match.group(1)) == 0:
            self.fail(f"{value!r} is not a duration: give it as 30d, 12h, 90m or 45s", param, ctx)
        return int(match.group(1)) * _SECONDS[match.group(2)]


class IdleTime(Duration):
    """A duration, or `0` (or `off`) for never."""

    name = "DURATION|0"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if str(value).strip().lower() in ("0", "off"):
            return 0
        return super().convert(value, param, ctx)


class EnvVar(click.ParamType):
    name = "KEY=VALUE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        key, sep, item = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} should be KEY=VALUE", param, ctx)
        return key, item
