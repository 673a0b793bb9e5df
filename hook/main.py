"""``tessera-hook``: the OCI hook's command line.

    tessera-hook createRuntime|prestart|poststop [settings flags]   (run by runc or crun)
    tessera-hook install --runtime containerd|crio [--root DIR]      (run once per node)
    tessera-hook uninstall --runtime containerd|crio [--root DIR]    (when Tessera leaves the node)

The hook stages take the fast path (:func:`hook.settings.parse_fast`): nothing heavier than
``json`` and ``hmac`` is imported. ``--help``, ``install`` and ``--config`` take the full parser,
which is built from ``tessera.config.HookConfig``. Whatever happens, the user sees one line on
stderr and an exit status: 0 started (or nothing to do), 1 refused, 2 bad input, 3 hook bug.
"""

from __future__ import annotations

import sys

from hook.errors import HookFailure, Refused
from hook.settings import HookSettings, parse_fast

STAGES = ("prestart", "createRuntime", "poststop")


def build_parser():
    """The full argument parser (imports the config package)."""
    from tessera.cli_parsers import daemon_parser
    from tessera.config import HookConfig

    parser = daemon_parser(
        "tessera-hook",
        "Tessera OCI hook, run by runc or crun at container start (createRuntime/prestart) and at\n"
        "poststop. Reads the OCI state on stdin and the bundle's config.json, verifies the signed\n"
        "grant, and keeps every GPU that was not granted out of the container.\n\n"
        "'install' writes the runtime's hook configuration (CRI-O hooks.d, or containerd's base\n"
        "runtime spec and config drop-in) and NVIDIA's container-toolkit switch; 'uninstall' removes\n"
        "them and puts the toolkit switch back as it was before the first install.",
        HookConfig,
        epilog="exit status: 0 started (or nothing to do), 1 refused, 2 bad input, 3 hook bug",
    )
    parser.add_argument("stage", nargs="?", choices=(*STAGES, "install", "uninstall"),
                        help="hook stage as configured in the runtime, or 'install' / 'uninstall'")
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="install, uninstall: the host's / is mounted here (default: /)")
    parser.add_argument("--hook-path", default=None, metavar="PATH",
                        help="install: the hook executable the runtime runs (default: this tessera-hook)")
    parser.add_argument("--containerd-config-dir", default="/etc/containerd", metavar="DIR",
                        help="install, uninstall: containerd's configuration folder as the host sees it, where the base "
                             "runtime spec and conf.d/tessera.toml go (k3s: "
                             "/var/lib/rancher/k3s/agent/etc/containerd; default: /etc/containerd)")
    return parser


def settings_from_args(args) -> HookSettings:
    """HookSettings from the config file (``--config``/``TESSERA_CONFIG``) with the flags over it."""
    from tessera.config import ConfigError, config_from_args

    try:
        config = config_from_args(args, "hook").hook
    except ConfigError as err:
        raise HookFailure(str(err)) from None
    try:
        return HookSettings(config.runtime, config.state_dir, config.grant_key_path, config.allow_privileged,
                            config.mps_user, tuple(config.exempt_namespaces))
    except ValueError as err:
        raise HookFailure(str(err)) from None


def run_stage(stage: str, settings: HookSettings, stdin) -> int:
    """Run one hook stage on the OCI state read from ``stdin``."""
    from hook.container import parse_state

    state = parse_state(stdin.read())
    if stage == "poststop":
        from hook.records import remove_record

        remove_record(settings.state_dir, state.id)
    else:
        from hook.container_start import start

        start(state, settings)
    return 0


def _main(argv: list[str]) -> int:
    try:
        fast = parse_fast(argv)
    except ValueError as err:
        raise HookFailure(str(err)) from None
    if fast is not None:
        stage, settings = fast
        return run_stage(stage, settings, sys.stdin.buffer)
    args = build_parser().parse_args(argv)
    if args.stage is None:
        raise HookFailure("no stage given: run as 'tessera-hook createRuntime|prestart|poststop' by the "
                          "container runtime, or 'tessera-hook install' (see --help)")
    settings = settings_from_args(args)
    if args.stage == "install":
        from hook.install import install

        for line in install(settings, root=args.root, hook_path=args.hook_path,
                            containerd_config_dir=args.containerd_config_dir):
            print(line)
        return 0
    if args.stage == "uninstall":
        from hook.uninstall import uninstall

        for line in uninstall(settings.runtime, root=args.root, containerd_config_dir=args.containerd_config_dir):
            print(line)
        return 0
    return run_stage(args.stage, settings, sys.stdin.buffer)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tessera-hook`` console script: never lets a traceback out."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except (HookFailure, Refused) as err:
        print(f"tessera-hook: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tessera-hook: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - the one line the runtime shows; never a traceback
        print(f"tessera-hook: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
