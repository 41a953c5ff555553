"""`python -m nomadpaas.slugbuilder`: run one build from local paths (the build task's entry).

    python -m nomadpaas.slugbuilder --source SRC --cache-dir C --output-dir O
        [--work-dir W] [--config-json FILE] [--stack S] [--commit SHA] [--build-id ID]
        [--buildpacks-dir DIR]

Streams the build log to stdout; exit 0 with `slug.tar.gz` and `slug.json` in the output
dir, 3 when the build failed (the last line says why), 2 for bad arguments.

    python -m nomadpaas.slugbuilder task

The `nomadpaas-build` job's command: inputs from the dispatch meta (`NOMAD_META_*`),
objects moved through presigned URLs; see dispatched.py.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    import argparse


def _parser() -> argparse.ArgumentParser:
    import argparse  # not on the build task's path (`task` takes its inputs from env)
    from pathlib import Path

    from nomadpaas.slugbuilder.compile import DEFAULT_STACK

    parser = argparse.ArgumentParser(prog="python -m nomadpaas.slugbuilder")
    parser.add_argument("--source", type=Path, required=True, help="source dir or .tar.gz")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, help="scratch dir (default: a temp dir)")
    parser.add_argument("--config-json", type=Path, help='{"NAME": "value", …} config vars')
    parser.add_argument("--stack", default=DEFAULT_STACK)
    parser.add_argument("--commit")
    parser.add_argument("--build-id")
    parser.add_argument("--buildpacks-dir", type=Path, default=None)
    return parser


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["task"]:
        # The dispatched build job's entry: inputs come from NOMAD_META_* (dispatched.py).
        # Its GETs go out first: S3 answers them while the pipeline is imported (early.py).
        # No garbage collection while the pipeline is imported: imports allocate much and
        # free nearly nothing, and the collections they set off cost ~2 ms of every
        # build's start. What is loaded by then stays for good: frozen out of later ones.
        import gc
        import os

        gc.disable()
        try:
            from nomadpaas.slugbuilder.early import send_early_requests

            early = send_early_requests(os.environ) if argv == ["task"] else None
            from nomadpaas.slugbuilder.dispatched import main as task_main
        finally:
            gc.freeze()
            gc.enable()
        return task_main(argv[1:], early=early)
    return _local_build(argv)


def _local_build(argv: list[str]) -> int:
    """One build from local paths (the arguments above)."""
    import json
    from pathlib import Path

    from nomadpaas.errors import NomadPaasError
    from nomadpaas.slugbuilder.compile import BuildRequest, build_slug, default_buildpacks_dir
    from nomadpaas.slugbuilder.scratch import scratch_dir

    args = _parser().parse_args(argv)
    config: dict[str, str] = {}
    if args.config_json is not None:
        try:
            loaded = json.loads(args.config_json.read_text())
        except (OSError, ValueError) as exc:
            _line(f" !     --config-json: {exc}")
            return 2
        if not isinstance(loaded, dict):
            _line(" !     --config-json must hold a JSON object")
            return 2
        config = {str(k): str(v) for k, v in loaded.items()}
    with scratch_dir("nomadpaas-build-") as scratch:
        request = BuildRequest(
            source=args.source,
            work_dir=args.work_dir or Path(scratch),
            cache_dir=args.cache_dir,
            output_dir=args.output_dir,
            config=config,
            buildpacks_dir=args.buildpacks_dir or default_buildpacks_dir(),
            stack=args.stack,
            commit=args.commit,
            build_id=args.build_id,
        )
        try:
            build_slug(request, log=_line)
        except NomadPaasError as exc:
            _line(f" !     Build failed: {exc.message}")
            if exc.hint:
                _line(f" !     {exc.hint}")
            return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
