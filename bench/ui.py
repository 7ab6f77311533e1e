"""`cvil-bench ui`: the MLflow UI/server on 127.0.0.1 against the local store, stopped cleanly on Ctrl-C.

`mlflow ui` with its defaults starts ~15 processes and killing its pid orphans the workers. So the server runs
with one worker and job execution off (2 processes, ready in seconds), in its own process group, and stopping
it signals the whole group. `MlflowServer` is also what the tests and any tool needing a tracking server for many
writers (`--tracking-uri http://127.0.0.1:P` for a grid) use.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from bench import tracking
from cvil.errors import CvilError


class ServerError(CvilError, RuntimeError):
    """The MLflow server did not come up (port taken, bad store URI): a user-facing one-line error."""


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1-65535, named in the error when it is not one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer in 1-65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1-65535, got {port}")
    return port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` as a process group: `start()`, `wait_ready()`, `stop()`; also a context manager."""

    def __init__(self, backend_store_uri: str = "sqlite:///mlflow.db", *, port: int = 5000, host: str = "127.0.0.1",
                 artifacts_destination: str | None = None, log_path: str | None = None):
        self.backend_store_uri, self.port, self.host = backend_store_uri, port, host
        self.artifacts_destination, self.log_path = artifacts_destination, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_store_uri,
               "--host", self.host, "--port", str(self.port), "--workers", "1"]
        if self.artifacts_destination:
            cmd += ["--artifacts-destination", self.artifacts_destination]
        return cmd

    def start(self) -> "MlflowServer":
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        out = open(self.log_path, "w") if self.log_path else None
        try:
            self.proc = subprocess.Popen(self.command(), env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                         start_new_session=True)
        finally:
            if out:
                out.close()  # the child holds its own descriptor
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll `/health` until it answers 200; fail early if the server process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                status = f"exit status {self.proc.returncode}; " if self.proc.returncode else ""
                raise ServerError(f"mlflow server on {self.host}:{self.port} stopped before answering {self.url}/health "
                                  f"({status}is port {self.port} in use, or the store unreadable? its log says why)")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"mlflow server at {self.url} not ready after {timeout_s:.0f}s")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole process group (gunicorn/uvicorn workers included), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the server leads its own group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # workers that outlived the leader
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "MlflowServer":
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


WORKFLOW_QUERY = "workflowType=machine_learning"  # MLflow 3 opens an experiment in its GenAI layout without it


def experiment_link(base_url: str, experiment_id: str, search_filter: str | None = None) -> str:
    """The deep link to an experiment's run list in MLflow 3's model-training layout (`?workflowType=
    machine_learning`; without it the UI may open the GenAI "Traces" view), optionally with a run filter typed in."""
    query = WORKFLOW_QUERY
    if search_filter:
        query += "&searchFilter=" + urllib.parse.quote(search_filter, safe="")
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def experiment_links(base_url: str, tracking_uri: str, name: str) -> list[str]:
    """The lines `cvil-bench ui` prints for experiment `name`: its run list, and the same without replaced runs."""
    from cvil import tracking_schema as schema

    try:
        exp = tracking.client(tracking_uri).get_experiment_by_name(name)
    except Exception:  # an unreadable store: the server's own page still opens
        exp = None
    if exp is None:
        return [f"experiment {name!r} has no runs yet: {base_url}/#/?{WORKFLOW_QUERY}"]
    return [f"experiment {name!r}: {experiment_link(base_url, exp.experiment_id)}",
            f"  without runs a re-run replaced ({schema.ACTIVE_RUNS_FILTER}): "
            f"{experiment_link(base_url, exp.experiment_id, schema.ACTIVE_RUNS_FILTER)}"]


def register(subparsers) -> None:
    p = subparsers.add_parser("ui", help="serve the MLflow UI for the local store on 127.0.0.1",
                              description=__doc__.splitlines()[0])
    p.add_argument("--port", type=port_number, default=5000, help="TCP port of the UI (default 5000)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (keep loopback unless you mean to share it)")
    p.add_argument("--backend-store-uri", default=None, help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--experiment", default="cvil",
                   help="experiment whose deep link is printed (default cvil, where cvil's runs go)")
    p.set_defaults(func=main)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    # Ctrl-C, `kill` and a closed terminal all end here; SIGINT explicitly, since a background job inherits it ignored
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    store = args.backend_store_uri or tracking.tracking_uri()
    if store.startswith(("http://", "https://")):
        print(f"cvil-bench ui: {store} is already a tracking server; open it in a browser", file=sys.stderr)
        return 2
    server = MlflowServer(store, port=args.port, host=args.host).start()
    try:
        server.wait_ready(timeout_s=120)
        print(f"MLflow UI at {server.url} (store {store}); Ctrl-C to stop", flush=True)
        for line in experiment_links(server.url, store, args.experiment):
            print(line, flush=True)
        while server.proc.poll() is None:
            time.sleep(0.5)
        return server.proc.returncode or 0
    except KeyboardInterrupt:
        print("stopping the MLflow server", flush=True)
        return 0
    finally:
        server.stop()
