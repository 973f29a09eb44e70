"""``pcloud serve BUNDLE...``: model bundles on NVIDIA Triton Inference Server through PyTriton.

PyTriton (``nvidia-pytriton``, which ships the ``tritonserver`` binary, 2.51 in PyTriton 0.7.0) starts Triton in a
child process and binds Python functions as models; requests arrive over Triton's HTTP and gRPC endpoints, which
speak the KServe v2 inference protocol (``POST /v2/models/<name>/infer`` with named, typed tensors; ``GET
/v2/health/ready``; ``GET /v2/models/<name>``), so any KServe v2 client works, as does :class:`pcloud.serve.Client`.

* One Triton model per bundle, named after the bundle folder (or ``--name``); model functions in
  :mod:`pcloud.serve.handlers`.
* Dynamic batching (Triton's dynamic batcher; ``max_batch_size`` clouds, ``max_queue_delay_us``): requests that
  arrive together reach the model function as one list, whose good rows run in one forward pass. Triton groups
  only requests whose non-batch shapes agree, so clients that pad to a common point count (the bundle's
  ``max_points``) batch best. Particle flow is served one event per request (no batch axis); the events handed
  over together are still processed in one vectorised iterative-inference pass.
* Bad rows are flagged in their own responses (:mod:`pcloud.serve.checks`); the other requests are unaffected.
* Binds ``127.0.0.1`` by default (Triton's own default is every interface); the metrics endpoint is off.

Environment: :mod:`pcloud.serve.stubenv` (``libpython`` on ``LD_LIBRARY_PATH``; the stub's NumPy < 2).
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from .handlers import load_handler


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tensor(name, dtype, shape):
    from pytriton.model_config import Tensor

    return Tensor(name=name, dtype=dtype, shape=shape)


class Server:
    """Triton serving the given bundles; a context manager (``with Server([...]) as s: s.url``) that always stops
    the server (and its child processes) on exit."""

    def __init__(self, bundles, host: str = "127.0.0.1", http_port: int | None = None, grpc_port: int | None = None,
                 max_batch_size: int = 64, max_queue_delay_us: int = 2000, names=None, log=print,
                 timeout_s: float = 120.0):
        bundles = [bundles] if isinstance(bundles, (str, bytes)) or hasattr(bundles, "is_dir") else list(bundles)
        if names and len(names) != len(bundles):
            raise ValueError(f"pcloud serve: {len(names)} --name for {len(bundles)} bundles")
        self.handlers = [load_handler(b, (names or [None] * len(bundles))[i]) for i, b in enumerate(bundles)]
        seen = [h.name for h in self.handlers]
        if len(set(seen)) != len(seen):
            raise ValueError(f"pcloud serve: two bundles with the model name {seen}; give --name for each")
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.max_batch_size, self.max_queue_delay_us = int(max_batch_size), int(max_queue_delay_us)
        self.log, self.timeout_s = log or (lambda s: None), float(timeout_s)
        self.triton = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def models(self) -> list[str]:
        return [h.name for h in self.handlers]

    def start(self) -> "Server":
        from .stubenv import prepare_environment

        prepare_environment()
        from pytriton.model_config import DynamicBatcher, ModelConfig
        from pytriton.triton import Triton, TritonConfig

        logging.getLogger("pytriton").setLevel(logging.WARNING)
        cfg = TritonConfig(http_address=self.host, grpc_address=self.host, http_port=self.http_port,
                           grpc_port=self.grpc_port, allow_metrics=False, exit_timeout_secs=5, log_verbose=0)
        self.triton = Triton(config=cfg)
        try:
            self.triton.__enter__()
            for h in self.handlers:
                if h.batching:
                    mc = ModelConfig(batching=True, max_batch_size=self.max_batch_size,
                                     batcher=DynamicBatcher(max_queue_delay_microseconds=self.max_queue_delay_us))
                else:
                    mc = ModelConfig(batching=False)
                self.triton.bind(model_name=h.name, infer_func=h,
                                 inputs=[_tensor(*s) for s in h.input_specs()],
                                 outputs=[_tensor(*s) for s in h.output_specs()], config=mc, strict=False)
            self.triton.run()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.log(f"pcloud serve: {', '.join(self.models)} on {self.url} (HTTP, KServe v2) and {self.grpc_url}")
        return self

    def _wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"pcloud serve: Triton not ready on {self.url} after {self.timeout_s:.0f} s")

    def stop(self) -> None:
        if self.triton is not None:
            t, self.triton = self.triton, None
            t.stop()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False


def serve_forever(bundles, host="127.0.0.1", http_port=8000, grpc_port=8001, max_batch_size=64,
                  max_queue_delay_us=2000, names=None) -> None:
    """``pcloud serve``: serve until SIGINT/SIGTERM, then stop Triton."""
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *a: done.set())
    try:
        with Server(bundles, host, http_port, grpc_port, max_batch_size, max_queue_delay_us, names) as s:
            print(f"models: {', '.join(s.models)}; Ctrl-C stops", flush=True)
            try:
                while not done.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["Server", "serve_forever", "free_port"]
