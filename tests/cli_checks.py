"""What every CLI bad-input test checks, as the convert ones do: the exit code, one line on stderr that
names the thing, no traceback."""


def assert_one_line_error(result, code: int, *expected: str) -> str:
    """The CliRunner result failed with `code` and one stderr line holding every `expected` text; returns it."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]
