"""The shared fixtures, which pytest hands to every test module: the sample downloads and their conversions, the
TFDS-valid downloads' conversion, the classic reference run, and the real servers (moto's S3, nginx, the
fault-injecting proxy) on 127.0.0.1.

Helpers (run_cli, convert_args, result_files, the small layout, the paths) are in helpers.py; the servers are in
servers.py. Session fixtures that hold an output folder are read-only: a test that changes one copies it first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any test module imports TensorFlow

from fixtures import make_fixtures  # noqa: E402
from helpers import AWS, METADATA, NOWHERE, SMALL_LAYOUT, SYNSETS, convert_args, run_cli  # noqa: E402
from servers import FaultProxy, moto_s3_server, nginx_server, require_nginx  # noqa: E402


# --------------------------------------------------------------------------------------------- temporaries

@pytest.fixture(scope="session", autouse=True)
def temporaries_under_pytest(tmp_path_factory):
    """Every temporary file of the tests and of the processes they start (the readers' own: streaming's
    `*_filelock` files, wids' `_wids_cache`) goes under pytest's folder, never into this machine's /tmp."""
    folder = tmp_path_factory.mktemp("tmpdir")
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "WIDS_CACHE")}
    os.environ.update(TMPDIR=str(folder), WIDS_CACHE=str(folder / "wids"))
    tempfile.tempdir = None  # gettempdir() asks TMPDIR again
    yield folder
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = None


# --------------------------------------------------------------------------------------------- the sample

@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> dict[str, Path]:
    """The sample downloads, freshly built (train, val, bbox, val_labels)."""
    return make_fixtures.build_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def converted_sample(sample, tmp_path_factory) -> Path:
    """The sample converted once to the classic TFRecord shards and bboxes.csv at `SMALL_LAYOUT` (`--quiet`): the
    local run that remote, Beam and read-back tests compare with. Read it, never change it (copy it first)."""
    out = tmp_path_factory.mktemp("converted") / "out"
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--quiet"))
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def both(sample, tmp_path_factory) -> Path:
    """The sample converted once to TFRecord and WebDataset with DALI's indexes (`SMALL_LAYOUT`, `--quiet`); read
    it, never change it (copy it first)."""
    out = tmp_path_factory.mktemp("both")
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, "--format", "tfrecord,webdataset", "--dali-index",
                                      "--quiet"))
    assert code == 0, err
    return out


def _converted_as(sample, tmp_path_factory, name: str, *args: str) -> Path:
    out = tmp_path_factory.mktemp(name)
    code, err = run_cli(*convert_args(sample, out, *SMALL_LAYOUT, *args, "--quiet"))
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def parquet_converted(sample, tmp_path_factory) -> Path:
    """The sample converted once with `--format parquet` (`SMALL_LAYOUT`); read it, never change it."""
    return _converted_as(sample, tmp_path_factory, "parquet", "--format", "parquet")


@pytest.fixture(scope="session")
def mds_converted(sample, tmp_path_factory) -> Path:
    """The sample converted once with `--format mds` (`SMALL_LAYOUT`); read it, never change it."""
    return _converted_as(sample, tmp_path_factory, "mds", "--format", "mds")


@pytest.fixture(scope="session")
def litdata_converted(sample, tmp_path_factory) -> Path:
    """The sample converted once with `--format litdata` (`SMALL_LAYOUT`); read it, never change it."""
    return _converted_as(sample, tmp_path_factory, "litdata", "--format", "litdata")


@pytest.fixture(scope="session")
def wids_converted(sample, tmp_path_factory) -> Path:
    """The sample converted once to WebDataset with the `wids` index (`--wids-index`, `SMALL_LAYOUT`); read it."""
    return _converted_as(sample, tmp_path_factory, "wids", "--format", "webdataset", "--wids-index")


@pytest.fixture(scope="session")
def tfds_converted(tmp_path_factory) -> Path:
    """The TFDS-valid tiny downloads (tfds_downloads.py) converted once with `--format tfds`: TFRecord files, one
    shard a split (TFDS's own rule). Read it, never change it (copy it first)."""
    from tfds_downloads import tfds_convert_args, write_tfds_downloads

    base = tmp_path_factory.mktemp("tfds-converted")
    code, err = run_cli(*tfds_convert_args(write_tfds_downloads(base / "dl"), base / "out"))
    assert code == 0, err
    return base / "out"


@pytest.fixture(scope="session")
def i21k_archive(tmp_path_factory) -> Path:
    """A small fall11_whole.tar of four per-synset tars with the awkward cases (i21k_archive.py, which also says what
    ImageNet-21K-P's recipe makes of it). Read it, never change it."""
    from i21k_archive import write_archive

    return write_archive(tmp_path_factory.mktemp("i21k-archive") / "fall11_whole.tar")


@pytest.fixture(scope="session")
def tfds_i21k_converted(i21k_archive, tmp_path_factory) -> Path:
    """`i21k_archive` converted once with `--dataset imagenet21k --format tfds` (its recipe's small thresholds,
    TFRecord files, TFDS's shard rule, the corrupt image skipped): the folder holding `imagenet21k/1.0.0/`. Read it,
    never change it (copy it first)."""
    from i21k_archive import RECIPE

    out = tmp_path_factory.mktemp("tfds-i21k") / "out"
    code, err = run_cli("convert", i21k_archive, "--out", out, *RECIPE, "--format", "tfds", "--on-bad-image", "skip",
                        "--quiet")
    assert code == 0, err
    return out


_classic_cache: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def classic(sample, tmp_path_factory):
    """classic(train_shards, validation_shards, threads) -> folder of the reference procedure's output."""
    from classic_reference import run_classic

    def run(train_shards: int, validation_shards: int, threads: int) -> Path:
        key = (train_shards, validation_shards, threads)
        if key not in _classic_cache:
            base = tmp_path_factory.mktemp("classic")
            run_classic(sample["train"], sample["val"], sample["bbox"], base / "processed", work_dir=base / "work",
                        synsets_file=SYNSETS, metadata_file=METADATA,
                        validation_labels_file=sample["val_labels"], train_shards=train_shards,
                        validation_shards=validation_shards, num_threads=threads)
            _classic_cache[key] = base / "processed"
        return _classic_cache[key]

    return run


# --------------------------------------------------------------------------------------------- S3 (moto's server)

@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """moto's standalone S3 server on a free 127.0.0.1 port, for the whole session: its endpoint URL."""
    pytest.importorskip("s3fs")
    with moto_s3_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch) -> None:
    """Fake credentials and region in the environment, as botocore looks for them; no default endpoint but NOWHERE."""
    for key, value in AWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", NOWHERE)
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", raising=False)


@pytest.fixture
def s3(s3_endpoint, aws_env):
    """An s3fs filesystem on the moto server (region from the environment: a `region_name` in client_kwargs would
    make s3fs's mkdir send LocationConstraint=us-east-1, which S3 and moto refuse)."""
    import s3fs

    fs = s3fs.S3FileSystem(key=AWS["AWS_ACCESS_KEY_ID"], secret=AWS["AWS_SECRET_ACCESS_KEY"],
                           client_kwargs={"endpoint_url": s3_endpoint})
    fs.invalidate_cache()
    return fs


# --------------------------------------------------------------------------------------------- HTTP (nginx, a proxy)

@pytest.fixture(scope="session")
def served(sample, tmp_path_factory) -> tuple[str, Path]:
    """nginx serving a copy of the sample downloads: (base URL, served folder)."""
    exe = require_nginx()
    www = tmp_path_factory.mktemp("www")
    for path in sample.values():
        shutil.copyfile(path, www / path.name)
    with nginx_server(www, tmp_path_factory.mktemp("nginx"), exe=exe) as url:
        yield url, www


@pytest.fixture
def fault_proxy():
    """fault_proxy(target_url, **rules) -> a running FaultProxy (see servers.py), stopped after the test."""
    started: list[FaultProxy] = []

    def start(target_url: str, **rules) -> FaultProxy:
        proxy = FaultProxy.to(target_url, **rules).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
