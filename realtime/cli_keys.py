"""``mindeye-rt keys``: a machine's CURVE key pair and its allow-list; and the key options
(``--keys``, ``--key-name``, ``--server-key``, ``--curve``) that ``stage``, ``console`` and
``viewer`` share.

Links stay plain on loopback.  When any link leaves loopback every socket uses CURVE
(:mod:`rt_wire.curve_auth`): each machine makes its pair once (``mindeye-rt keys DIR``), gives
its public ``NAME.key`` to the machines it talks to, and allows theirs
(``mindeye-rt keys DIR --allow PEER.key``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

import zmq

from rt_base.errors import ConfigError
from rt_wire import transport
from rt_wire.curve_auth import CurveSecurity, add_refusal_reporter, remote_addresses
from rt_wire.curve_keys import (
    ALLOWED_DIR,
    allow_key,
    allowed_keys,
    check_key_dir,
    create_key_pair,
    default_key_name,
    load_identity,
)
from rt_wire.message import Message


def add_keys_parser(sub) -> None:
    """The ``keys`` command."""
    p = sub.add_parser(
        "keys",
        help="make this machine's CURVE key pair, or allow a peer's public key",
        description="Without --allow or --list: make the key pair NAME.key (public: give it to "
        "the peers) and NAME.key_secret (mode 0600: never copy it) in DIR.  --allow copies a "
        f"peer's public NAME.key into DIR/{ALLOWED_DIR}/, the machines whose connections the "
        "stages of this machine accept.",
    )
    p.add_argument("dir", metavar="DIR", help="key directory (made, mode 0700, if missing)")
    p.add_argument(
        "--name",
        help=f"this machine's name, the key files' stem (default: host name, {default_key_name()})",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PEER.key",
        help="allow a peer's public certificate (repeatable)",
    )
    p.add_argument("--list", action="store_true", help="show the key pair(s) and the allow-list")
    p.add_argument("--force", action="store_true", help="replace an existing key pair")


def cmd_keys(args) -> int:
    """Run ``mindeye-rt keys`` as asked by ``args``."""
    if args.allow:
        for cert in args.allow:
            target = allow_key(args.dir, cert)
            print(f"allowed {target.name}: {target}")
    elif not args.list:
        name = args.name or default_key_name()
        public, secret = create_key_pair(args.dir, name, overwrite=args.force)
        print(f"secret key: {secret} (mode 0600; keep it on this machine)")
        print(f"public key: {public}")
        print(
            f"give {public.name} to each machine this one talks to; each runs "
            f"`mindeye-rt keys THEIR_DIR --allow {public.name}`, and this one allows theirs"
        )
    if args.list:
        _print_keys(args.dir)
    return 0


def _print_keys(key_dir: str) -> None:
    path = check_key_dir(key_dir, "DIR")
    for secret in sorted(path.glob("*.key_secret")):
        ident = load_identity(path, secret.name[: -len(".key_secret")])
        print(f"key pair {ident.name}: {ident.public.decode()}")
    allowed = allowed_keys(path)
    print(f"allowed ({len(allowed)}):")
    for key, name in sorted(allowed.items(), key=lambda kv: kv[1]):
        print(f"  {name}: {key.decode()}")


# -- the key options of the commands that open sockets -------------------------------------------
def add_key_options(p: argparse.ArgumentParser) -> None:
    """``--keys``, ``--key-name``, ``--server-key``, ``--curve``."""
    g = p.add_argument_group("authenticated links (CURVE)")
    g.add_argument(
        "--keys",
        metavar="DIR",
        help="this machine's key directory (`mindeye-rt keys DIR`): CURVE on every socket; "
        "needed as soon as a link leaves loopback",
    )
    g.add_argument(
        "--key-name",
        dest="key_name",
        metavar="NAME",
        help="which key pair of DIR (default: its only one)",
    )
    g.add_argument(
        "--server-key",
        dest="server_key",
        action="append",
        default=[],
        metavar="[HOST=]NAME",
        help="public key of the machine that binds the addresses this one connects to (a name "
        f"in DIR or DIR/{ALLOWED_DIR}, or a .key file; HOST= for one host; default: this machine)",
    )
    g.add_argument(
        "--curve",
        action="store_true",
        default=None,
        help="CURVE even on loopback (needs --keys)",
    )


def security_from_args(args, addresses: Iterable[str | None]) -> CurveSecurity | None:
    """The security a command's sockets use: CURVE with ``--keys``/``--curve`` or when one of
    ``addresses`` leaves loopback; None (plain) on loopback without keys.

    Raises
    ------
    ConfigError
        CURVE needed and no ``--keys``; or a bad key directory or key (named, with the remedy).
    """
    keys = getattr(args, "keys", None)
    remote = remote_addresses(a for a in addresses if a)
    if keys is None:
        if getattr(args, "curve", None) or remote:
            why = "--curve is on" if not remote else f"{remote[0]} leaves loopback"
            raise ConfigError(
                f"{why}, so the link must be authenticated with CURVE keys and none are given: "
                "make this machine's key pair with `mindeye-rt keys DIR`, then pass --keys DIR"
            )
        if getattr(args, "server_key", None) or getattr(args, "key_name", None):
            raise ConfigError("--key-name and --server-key need --keys DIR")
        return None
    return CurveSecurity.load(keys, getattr(args, "key_name", None), args.server_key or ())


def key_arguments(security: CurveSecurity | None) -> list[str]:
    """Command-line options giving a child process on this machine ``security``'s key pair
    (none: plain links); the child's servers are this machine (a launcher's own stages)."""
    if security is None:
        return []
    return ["--keys", str(security.key_dir), "--key-name", security.identity.name]


def report_refusals_to_telemetry(
    ctx: zmq.Context, telemetry_addr: str, stage: str, security: CurveSecurity
) -> zmq.Socket:
    """Publish each refused connection as a warning ``log`` of ``stage`` on the telemetry hub
    (the consoles and the launcher show it).  Returns the publishing socket (close it at the
    end); it is used only by the authenticator's thread."""
    pub = transport.display_publisher(ctx, telemetry_addr, security=security)

    def report(text: str) -> None:
        meta = {"stage": stage, "level": "warning", "text": text}
        transport.try_publish(pub, Message("log", meta=meta, t={"sent": time.time()}))

    add_refusal_reporter(ctx, report)
    return pub
