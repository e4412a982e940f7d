"""``alsresearch serve``: serve a promoted model over HTTP (:func:`alsresearch.serve.run`)."""

from __future__ import annotations

import sys
from pathlib import Path

from alsresearch import paths
from alsresearch.cli._options import HelpFormatter, check_options
from alsresearch.errors import ModelFileError
from alsresearch.limits import MAX_BODY_BYTES
from alsresearch.serve import DEFAULT_WATCH_INTERVAL


def add_command(subparsers) -> None:
    default_model = paths.models_dir() / "als_baseline.npz"
    p = subparsers.add_parser(
        "serve",
        help="serve a promoted model over HTTP (FastAPI + uvicorn)",
        description="Load a promoted model once and answer recommendation requests over HTTP. "
        "OpenAPI docs at /docs.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", type=Path, default=default_model, help="promoted model file")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info"],
        help="log lines at this level and above",
    )
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS and kernel threads per scoring call (1 by default: requests are small, and "
        "on a busy machine multi-threaded kernels wait for their threads); 0 keeps the "
        "libraries' defaults (all cores)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help="refuse (413) a request body over this many bytes (1 MiB)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="check the model files every --watch-interval seconds and swap in a newly "
        "promoted model once it loads and answers (SIGHUP asks for a check either way); a "
        "corrupt or incompatible file is refused with a log line and the old model serves on",
    )
    p.add_argument(
        "--watch-interval",
        type=float,
        default=DEFAULT_WATCH_INTERVAL,
        help="seconds between two checks under --watch",
    )
    p.add_argument(
        "--allow-updates",
        action="store_true",
        help="take POST /updates from loopback clients: users and items re-solved or added "
        "from their histories between retrains, without a restart (default: off, 403)",
    )
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    check_options(
        args,
        {"watch_interval": (lambda a: None if a.watch else "has no effect without --watch",)},
    )
    try:
        import uvicorn  # noqa: F401

        from alsresearch import serve
    except ImportError as exc:
        print(
            f"alsresearch serve: needs the serve extra (pip install 'alsresearch[serve]'): {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        serve.run(
            args.model,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=not args.no_access_log,
            threads=args.threads,
            max_body_bytes=args.max_body_bytes,
            watch=args.watch,
            watch_interval=args.watch_interval,
            allow_updates=args.allow_updates,
        )
    except (ModelFileError, FileNotFoundError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if str(args.model) not in message:
            message = f"{args.model}: {message}"
        print(f"alsresearch serve: cannot load the model: {message}", file=sys.stderr)
        return 1
    return 0
