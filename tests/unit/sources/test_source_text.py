"""Source text and emptiness: manifests must be UTF-8 unless the input sets an `encoding`
(a bad line is one record's error; a UTF-16 file or a bad byte in a one-document JSON file
fails the build naming the file, the byte and the fix), and an empty source fails with a
message naming the input."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from editthinker_data.cli import app
from editthinker_data.config import ConfigError
from editthinker_data.pipeline.preflight import check_sources
from editthinker_data.sources import read_input
from editthinker_data.sources.base import SourceFileError, SourceRecord
from tests.e2e.test_hostile_inputs import config, write
from tests.support.source_fixtures import png


def test_a_utf16_manifest_is_a_configuration_error_that_names_the_encoding(tmp_path):
    write(tmp_path / "img" / "a.png", png(1))
    line = json.dumps({"id": "a", "image": "img/a.png", "instruction": "Make it café brown."}) + "\n"
    write(tmp_path / "bom.jsonl", line.encode("utf-16"))  # with a byte order mark
    write(tmp_path / "nobom.jsonl", line.encode("utf-16-le"))
    for name, message in (
        ("bom", "starts with a UTF-16 LE byte order mark"),
        ("nobom", "NUL byte at offset 1"),
    ):
        spec = {"format": "jsonl", "path": str(tmp_path / f"{name}.jsonl"), "name": name}
        with pytest.raises(ConfigError, match=message) as err:
            check_sources(config([spec]))
        assert f"{name}.jsonl" in str(err.value) and "encoding" in str(err.value)
        # read without preflight (as for an s3:// manifest): the same error, naming the input
        with pytest.raises(SourceFileError, match=f"source input '{name}'.*{message}"):
            list(read_input(config([spec]).source.inputs[0], prefix_ids=False))
    fixed = config([{"format": "jsonl", "path": str(tmp_path / "bom.jsonl"), "encoding": "utf-16"}])
    check_sources(fixed)
    (rec,) = read_input(fixed.source.inputs[0], prefix_ids=False)
    assert isinstance(rec, SourceRecord) and rec.instruction == "Make it café brown."


def test_latin1_text_is_refused_unless_the_input_sets_its_encoding(tmp_path):
    write(tmp_path / "img" / "a.png", png(1))
    raw = b'{"id": "a", "image": "img/a.png", "instruction": "Make it caf\xe9 brown."}\n'
    write(tmp_path / "m.jsonl", raw)
    (err,) = read_input(
        config([{"format": "jsonl", "path": str(tmp_path / "m.jsonl")}]).source.inputs[0], False
    )
    assert err.reason == "bad_encoding" and "byte 0xe9 at offset 61 (column 62)" in err.detail
    spec = config(
        [{"format": "jsonl", "path": str(tmp_path / "m.jsonl"), "encoding": "latin-1"}]
    ).source.inputs[0]
    (rec,) = read_input(spec, False)
    assert rec.instruction == "Make it café brown."  # not "caf\ufffd"
    # a JSON array is one document: a bad byte fails the file, naming its offset and line
    write(tmp_path / "editing.json", b'[\n{"input_prompt": "caf\xe9", "input_image": ["img/a.png"]}\n]')
    spec = config([{"format": "opengpt4o", "path": str(tmp_path / "editing.json")}]).source.inputs[0]
    with pytest.raises(
        SourceFileError, match=r"editing.json: byte 0xe9 at offset 23 \(line 2\) is not UTF-8"
    ):
        list(read_input(spec, False))
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        config([{"format": "jsonl", "path": str(tmp_path / "m.jsonl"), "encoding": "klingon"}])
    with pytest.raises(ConfigError, match="encoding applies to JSON text formats"):
        check_sources(config([{"format": "parquet", "path": str(tmp_path), "encoding": "latin-1"}]))


def test_an_empty_source_fails_with_a_message_naming_the_input(tmp_path):
    write(tmp_path / "empty.jsonl", b"")
    write(tmp_path / "blank.jsonl", "\n  \n\n")
    (tmp_path / "shards").mkdir()
    for name, fmt, message in (
        ("empty.jsonl", "jsonl", "is empty \\(0 bytes\\)"),  # caught before any work
        ("blank.jsonl", "jsonl", "holds no records"),  # caught when read
        ("shards", "webdataset", "holds no records"),
    ):
        cfg_path = tmp_path / f"{fmt}-{name}.yaml"
        cfg_path.write_text(
            yaml.safe_dump({"source": {"inputs": [{"format": fmt, "path": name, "name": "mine"}]}})
        )
        result = CliRunner().invoke(app, ["pool", str(cfg_path), "-o", str(tmp_path / f"out-{name}")])
        text = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert "source input 'mine'" in text and name in text
        assert re.search(message, text), text
