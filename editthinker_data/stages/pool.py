"""The pool stage: every configured input read, validated, deduplicated, balanced and
assigned to editors and partitions (pipeline/pooling.py), written once as the snapshot that
every later stage reads (io/pool_snapshot.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import FAILURES_FILE, POOL_FILE, POOL_IMAGES, StageName, pool_image
from editthinker_data.core.reports import PoolReport
from editthinker_data.core.runenv import state_dir_for
from editthinker_data.io.imagesig import SignatureCache
from editthinker_data.io.storage import Storage, join_url
from editthinker_data.io.tables import POOL_SCHEMA, write_parquet
from editthinker_data.pipeline.pooling import pool
from editthinker_data.sources import read_input
from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.defaults import licence_warnings
from editthinker_data.stages.base import Stage, failures_of, write_failures


def pool_records(cfg: BuildConfig) -> Iterator[SourceRecord | RecordError]:
    """Every configured input's records, in config order."""
    inputs = cfg.source.all_inputs()
    for spec in inputs:
        yield from read_input(spec, prefix_ids=len(inputs) > 1, max_image_bytes=cfg.source.max_image_bytes)


def signature_cache_path(cfg: BuildConfig, storage: Storage) -> Path:
    """Image signatures survive reruns: in the build's run state (always a local folder)."""
    return state_dir_for(storage.url, cfg.run.state_dir) / "imagesig.sqlite"


class PoolStage(Stage[PoolReport]):
    """Pool once: the snapshot (pool/pairs.parquet, embedded images under pool/images/) and
    its marker are what every later stage and every rerun read."""

    name = StageName.POOL
    report = PoolReport
    # Its inputs may be folders of the driver's machine (a config's relative paths included).
    placement = "beside_driver"

    def on_skip(self, storage: Storage, unit: str, report: PoolReport) -> None:
        if not storage.exists(FAILURES_FILE):  # pooled by an older version; a build's file stays
            write_failures(storage, report.failures)

    def process(self, storage: Storage, unit: str, sig_cache: str | Path | None = None) -> PoolReport:
        cfg = self.cfg

        def store(sha: str, ext: str, data: bytes) -> str:
            name = pool_image(sha, ext)
            storage.write_bytes(name, data)
            return join_url(storage.url, name)

        sigs = SignatureCache(sig_cache or signature_cache_path(cfg, storage))
        try:
            result = pool(pool_records(cfg), cfg, sigs=sigs, store=store)
        finally:
            sigs.close()
        kept = {e.image_sha256 for e in result.entries}
        for sha, url in result.stored_images.items():  # embedded images no kept pair uses
            if sha not in kept:
                storage.delete(f"{POOL_IMAGES}/{url.rsplit('/', 1)[-1]}")
        write_parquet(storage, POOL_FILE, [asdict(e) for e in result.entries], POOL_SCHEMA)
        report = PoolReport(
            pairs=len(result.entries),
            partitions=sorted({e.partition for e in result.entries}),
            stats=result.stats.to_dict(),
            by_task_type=result.by_type,
            by_editor=dict(Counter(e.editor for e in result.entries)),
            by_source=result.by_source,
            licences=result.licences,
            licence_warnings=licence_warnings(result.licences),
            signature_cache={"hits": sigs.hits, "misses": sigs.misses},
            sources=cfg.source_content,  # what the inputs held (sources/content.py)
            config_fingerprint=cfg.fingerprint(content=False),
            failures=failures_of(result.failures, "pool"),
        )
        write_failures(storage, report.failures)  # before the marker: a marked pool has its file
        return report
