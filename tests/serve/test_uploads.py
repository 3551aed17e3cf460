"""uploads.py: a streamed multipart body under a size limit, content sniffing and server-chosen names."""

import asyncio

import pytest

from vary_cli.serve.http import ApiError
from vary_cli.serve.uploads import check_name, receive_form, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
PDF = b"%PDF-1.4\n" + b"x" * 40


def body(parts, boundary="XyZ"):
    """A multipart body: parts are (name, filename or None, bytes)."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def receive(data, tmp_path, limit=10_000, chunk=7, content_length=None, content_type="multipart/form-data; boundary=XyZ",
            sent=None):
    sent = [] if sent is None else sent

    async def chunks():
        for i in range(0, len(data), chunk):
            sent.append(chunk)
            yield data[i:i + chunk]

    form = asyncio.run(receive_form(chunks(), content_type, content_length, tmp_path, limit))
    return form, sum(sent)


def test_files_and_fields_arrive_under_server_names(tmp_path):
    form, _ = receive(body([("file", "paper.pdf", PDF), ("format", None, b"tex"), ("file", "scan.bin", PNG)]),
                      tmp_path)
    assert form.fields == {"format": "tex"}
    assert [(u.name, u.path.name, u.kind, u.size) for u in form.files] == [
        ("paper.pdf", "0.pdf", "pdf", len(PDF)), ("scan.bin", "1.png", "image", len(PNG))]
    assert form.files[1].path.read_bytes() == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.pdf", "1.png"]


def test_the_limit_cuts_the_body_off_while_it_streams(tmp_path):
    data = body([("file", "big.pdf", PDF + b"y" * 100_000)])
    sent = []
    with pytest.raises(ApiError) as caught:
        receive(data, tmp_path, limit=5_000, chunk=1000, sent=sent)
    assert caught.value.status == 413 and "cut off" in str(caught.value)
    # The reader stopped at the first chunk past the limit: it never asked for the rest of the body.
    assert sum(sent) == 6_000


def test_the_limit_reads_nothing_when_content_length_announces_more(tmp_path):
    data = body([("file", "big.pdf", PDF)])
    with pytest.raises(ApiError) as caught:
        receive(data, tmp_path, limit=50, content_length=str(len(data)))
    assert caught.value.status == 413 and "--max-upload-mb" in str(caught.value)


@pytest.mark.parametrize("name", ["../evil.pdf", "a/b.pdf", "..", "x\\..\\a.pdf", "bad\x01.pdf"])
def test_a_path_as_file_name_is_refused(tmp_path, name):
    with pytest.raises(ApiError) as caught:
        receive(body([("file", name, PDF)]), tmp_path)
    assert caught.value.status == 400
    assert not (tmp_path.parent / "evil.pdf").exists()


@pytest.mark.parametrize("data, status, words", [
    (b"", 400, "empty"), (b"hello, not a document", 415, "not a PDF or an image"),
])
def test_empty_and_unknown_content_are_refused(tmp_path, data, status, words):
    with pytest.raises(ApiError) as caught:
        receive(body([("file", "x.pdf", data)]), tmp_path)
    assert caught.value.status == status and words in str(caught.value)


def test_not_multipart_no_file_and_a_cut_body(tmp_path):
    with pytest.raises(ApiError) as caught:
        receive(b"{}", tmp_path, content_type="application/json")
    assert caught.value.status == 415
    with pytest.raises(ApiError) as caught:
        receive(body([("format", None, b"md")]), tmp_path)
    assert caught.value.status == 400 and "no file" in str(caught.value)
    with pytest.raises(ApiError) as caught:
        receive(body([("file", "a.pdf", PDF)])[:-20], tmp_path)
    assert caught.value.status == 400


def test_an_old_browser_s_full_windows_path_keeps_its_base_name(tmp_path):
    # python-multipart drops the folders of the full paths old Internet Explorer sent; nothing else passes.
    form, _ = receive(body([("file", "C:\\Users\\me\\a.pdf", PDF)]), tmp_path)
    assert form.files[0].name == "a.pdf"


def test_sniff_and_names():
    assert sniff(b"junk" * 10 + b"%PDF-1.7") == ("pdf", ".pdf")
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("image", ".webp")
    assert sniff(b"II*\x00rest") == ("image", ".tif")
    assert sniff(b"<html>") is None
    assert check_name("", 2) == "upload-3"
    assert check_name("Übersicht (1).pdf", 0) == "Übersicht (1).pdf"
