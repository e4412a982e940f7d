"""``alsresearch serve``: serve a promoted model over HTTP (:func:`alsresearch.serve.run`)."""

from __future__ import annotations

import sys
from pathlib import Path

from alsresearch import paths
from alsresearch.errors import ModelFileError


def add_command(subparsers) -> None:
    default_model = paths.models_dir() / "als_baseline.npz"
    p = subparsers.add_parser(
        "serve",
        help="serve a promoted model over HTTP (FastAPI + uvicorn)",
        description="Load a promoted model once and answer recommendation requests over HTTP. "
        "OpenAPI docs at /docs.",
    )
    p.add_argument("--model", type=Path, default=default_model, help=f"default: {default_model}")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info"])
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS and numba threads for scoring (default 1: requests are small and answered "
        "one at a time; on a busy machine multi-threaded kernels wait for their threads). "
        "0 keeps the libraries' defaults (all cores).",
    )
    p.set_defaults(func=_serve)


def _serve(args) -> int:
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
        )
    except (ModelFileError, FileNotFoundError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if str(args.model) not in message:
            message = f"{args.model}: {message}"
        print(f"alsresearch serve: cannot load the model: {message}", file=sys.stderr)
        return 1
    return 0
