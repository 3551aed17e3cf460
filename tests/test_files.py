"""files.py: a failed atomic write is one OutputError naming the target, and nothing is left behind."""

import pytest

from vary_cli.errors import OutputError
from vary_cli.files import atomic_write_bytes, atomic_write_text


@pytest.mark.parametrize("write", [atomic_write_text, atomic_write_bytes])
def test_a_parent_that_is_a_file_is_an_output_error_not_the_cleanup_error(tmp_path, write):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    target = blocker / "r.html"
    with pytest.raises(OutputError, match="a-file/r.html: cannot write the output"):
        write(target, "x" if write is atomic_write_text else b"x")
    assert blocker.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]
