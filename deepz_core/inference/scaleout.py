"""Dask execution of partitioned predictions (deepz_core.inference.stream): one task per partition.

``--dask local`` starts a distributed.LocalCluster with one single-threaded worker process per core
(``--dask local:N``: N workers);
``--dask tcp://HOST:8786`` connects to a running scheduler (e.g. dask-jobqueue's SLURMCluster, or
dask-cuda's LocalCUDACluster for one worker per GPU). Workers read the catalogue themselves, so it
and OUT must be on a file system every worker sees; each worker process loads the model once
(stream.load_predictor caches it) and writes its parts atomically.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from deepz_core.device import usable_cores
from deepz_core.errors import ConfigError
from deepz_core.inference.stream import Mapper, predict_part

if TYPE_CHECKING:
    from distributed import Client


def local_workers(spec: str) -> int | None:
    """Workers of a ``local`` / ``local:N`` spec (one per usable core for ``local``); None for
    anything else. ConfigError for a bad N."""
    if spec == "local":
        return usable_cores()
    if not spec.startswith("local:"):
        return None
    text = spec.removeprefix("local:")
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--dask local:N needs a number of workers N >= 1, got {spec!r}")
    return int(text)


@contextmanager
def dask_client(spec: str, processes: bool = True) -> Iterator[object]:
    """A distributed Client for ``local`` (a LocalCluster with one single-threaded worker per
    core), ``local:N`` (N such workers) or a scheduler address ``tcp://HOST:PORT``; a local
    cluster is shut down on exit."""
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError as err:
        raise ConfigError(
            "--dask needs the 'distributed' package (pip install distributed)"
        ) from err
    workers = local_workers(spec)
    if workers is not None:
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    elif "://" in spec:
        try:
            client = Client(spec, timeout="30s")
        except OSError as err:
            raise ConfigError(f"--dask {spec}: cannot reach the scheduler ({err})") from err
        with client:
            yield client
    else:
        raise ConfigError(
            f"--dask must be 'local', 'local:N' or a scheduler address tcp://HOST:PORT, got {spec!r}"
        )


def dask_map(client: Client) -> Mapper:
    """A stream.predict_dataset mapper that runs each predict_part task on the cluster."""
    from distributed import as_completed

    def mapper(tasks: list[tuple]) -> Iterator[int]:
        futures = [client.submit(predict_part, *t, pure=False) for t in tasks]
        for future in as_completed(futures):
            yield future.result()

    return mapper
