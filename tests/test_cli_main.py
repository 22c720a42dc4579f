"""The ``hsimap`` group's Ctrl-C handling (``HsimapGroup.invoke``), including a Ctrl-C that
Python itself wrapped in another error."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from hsimap.cli import main as cli_main
from hsimap.errors import caused_by_interrupt


class _InterruptedDescriptor:
    """A class attribute whose ``__set_name__`` is where the Ctrl-C lands (as when it
    arrives while a lazily imported module defines its dataclasses)."""

    def __set_name__(self, owner: type, name: str) -> None:
        raise KeyboardInterrupt


@click.command()
def wrapped_interrupt() -> None:
    """Python reports the interrupt as RuntimeError("Error calling __set_name__ ...")."""
    type("Defined", (), {"field": _InterruptedDescriptor()})


@click.command()
def plain_error() -> None:
    raise RuntimeError("a bug, not an interrupt")


@click.command()
@click.pass_context
def handles_its_own(ctx: click.Context) -> None:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        click.echo("Interrupted: the command's own message", err=True)
        ctx.exit(130)


@click.command()
def error_after_interrupt() -> None:
    """An hsimap error raised while cleaning up after a Ctrl-C is the interrupt's."""
    from hsimap.errors import TrainingError

    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise TrainingError("cleanup failed") from None


@click.command()
def hsimap_error() -> None:
    from hsimap.errors import TrainingError

    raise TrainingError("only 1 training pixel(s)", fix="label more pixels")


@pytest.fixture()
def commands(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {name: (__name__, name, "test command")
             for name in ("wrapped_interrupt", "plain_error", "handles_its_own",
                          "error_after_interrupt", "hsimap_error")}
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", {**cli_main.SUBCOMMANDS, **extra})


def test_a_wrapped_ctrl_c_is_an_interrupt_not_a_traceback(commands: None) -> None:
    with pytest.raises(RuntimeError, match="__set_name__") as info:
        type("Defined", (), {"field": _InterruptedDescriptor()})
    assert caused_by_interrupt(info.value)  # the real wrapping, as Python does it
    result = CliRunner().invoke(cli_main.cli, ["wrapped_interrupt"], obj={})
    assert result.exit_code == 130, result.output
    assert result.output.count("Interrupted") == 1 and "Traceback" not in result.output


def test_other_errors_and_a_commands_own_interrupt_exit_pass_unchanged(commands: None) -> None:
    result = CliRunner().invoke(cli_main.cli, ["plain_error"], obj={})
    assert isinstance(result.exception, RuntimeError) and not caused_by_interrupt(
        result.exception)
    result = CliRunner().invoke(cli_main.cli, ["handles_its_own"], obj={})
    assert result.exit_code == 130
    assert result.output.count("Interrupted") == 1, result.output  # no second message
    result = CliRunner().invoke(cli_main.cli, ["error_after_interrupt"], obj={})
    assert result.exit_code == 130 and "Interrupted" in result.output, result.output
    result = CliRunner().invoke(cli_main.cli, ["hsimap_error"], obj={})
    assert result.exit_code not in (0, 130) and "Interrupted" not in result.output
    assert "only 1 training pixel(s)" in result.output and "label more pixels" in result.output


def test_caused_by_interrupt_follows_causes_and_contexts_without_looping() -> None:
    assert caused_by_interrupt(KeyboardInterrupt())
    assert not caused_by_interrupt(ValueError("x"))
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError("while cleaning up") from None  # cause hidden, context kept
    except OSError as exc:
        assert caused_by_interrupt(exc)
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not caused_by_interrupt(a)
