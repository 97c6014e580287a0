"""CURVE key files: a machine's key pair and its allow-list of peers' public keys.

A key directory, as ``mindeye-rt keys DIR`` makes it and pyzmq's :mod:`zmq.auth` reads it::

    DIR/NAME.key            public certificate of this machine (give it to the peers)
    DIR/NAME.key_secret     secret certificate (mode 0600: read by its owner only)
    DIR/allowed/PEER.key    public certificates of the machines allowed to connect

The certificates are written by :func:`zmq.auth.create_certificates` and read by
:func:`zmq.auth.load_certificate`; this module adds the checks a user needs: a secret readable by
others is refused (it may have been copied), a malformed or misplaced certificate is named, and
a secret certificate is never put in an allow-list.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from rt_base.errors import ConfigError

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
ALLOWED_DIR = "allowed"
SECRET_MODE = 0o600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEYS_HINT = "make one with `mindeye-rt keys DIR --name MACHINE`"


@dataclass(frozen=True)
class CurveIdentity:
    """One machine's key pair (Z85-encoded, 40 bytes each) and where it was read from."""

    name: str
    public: bytes
    secret: bytes
    path: Path


def check_key_name(name: object, option: str = "name") -> str:
    """A machine name usable as a file name: letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"'{option}' must be a machine name of letters, digits, '.', '_' or '-' (at most 64, "
            f"not starting with '.', '_' or '-'), got {name!r}"
        )
    return name


def default_key_name() -> str:
    """This machine's host name, cut to what :func:`check_key_name` accepts."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("._-")
    return name[:64] or "machine"


def check_key_dir(key_dir: str | os.PathLike, option: str = "keys") -> Path:
    """``key_dir`` as a Path if it is an existing directory, else a ConfigError with the remedy."""
    path = Path(key_dir).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise ConfigError(f"'{option}' key directory {str(path)!r} {what}; {_KEYS_HINT}")
    return path


def create_key_pair(
    key_dir: str | os.PathLike, name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) in ``key_dir`` (made if missing,
    mode 0700, when its parent exists).

    Returns
    -------
    public, secret : the two certificate files.

    Raises
    ------
    ConfigError
        A bad name, a parent folder that does not exist, or a key pair of that name already
        there (``overwrite`` replaces it: the peers must then be given the new public key).
    """
    check_key_name(name)
    path = Path(key_dir).expanduser()
    if not path.exists():
        if not path.parent.is_dir():
            raise ConfigError(
                f"cannot make key directory {str(path)!r}: its parent folder does not exist"
            )
        path.mkdir(mode=0o700)
    path = check_key_dir(path, "DIR")
    public, secret = path / f"{name}{PUBLIC_SUFFIX}", path / f"{name}{SECRET_SUFFIX}"
    if not overwrite and (public.exists() or secret.exists()):
        raise ConfigError(
            f"{str(secret)!r} already exists; keep it, pick another --name, or pass --force to "
            "replace it (its peers then need the new public key)"
        )
    old_umask = os.umask(0o077)  # the secret is never readable by others, not even for a moment
    try:
        zmq.auth.create_certificates(str(path), name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, SECRET_MODE)
    os.chmod(public, 0o644)
    return public, secret


def check_secret_mode(path: Path) -> None:
    """Refuse a secret certificate that its group or other users can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"secret key {str(path)!r} has mode {mode:04o}: other users can read it, so it may "
            f"have been copied. Restrict it with `chmod 600 {path}` (or make a new pair with "
            "`mindeye-rt keys DIR --force` and give the peers the new public key)"
        )


def read_certificate(path: str | os.PathLike, *, secret: bool) -> tuple[bytes, bytes | None]:
    """The Z85 public key (and secret key when ``secret``) of a certificate file.

    Raises
    ------
    ConfigError
        Missing file, no or malformed key, or a secret certificate without its secret key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"certificate {str(path)!r} does not exist; {_KEYS_HINT}")
    if secret:
        check_secret_mode(path)
    try:
        public_key, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"certificate {str(path)!r} cannot be read: {err}") from None
    _check_z85(public_key, path, "public-key")
    if secret:
        if secret_key is None:
            raise ConfigError(
                f"{str(path)!r} holds no secret-key: give the machine's {SECRET_SUFFIX} file"
            )
        _check_z85(secret_key, path, "secret-key")
    return public_key, secret_key


def _check_z85(key: bytes, path: Path, field: str) -> None:
    try:
        raw = zmq.utils.z85.decode(key) if len(key) == 40 else b""
    except (ValueError, KeyError, IndexError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"certificate {str(path)!r} is malformed: its {field} must be 40 Z85 characters "
            f"(a 32-byte CURVE key), got {key[:48]!r}"
        )


def load_identity(key_dir: str | os.PathLike, name: str | None = None) -> CurveIdentity:
    """This machine's key pair from ``key_dir`` (``NAME.key_secret``).

    ``name`` None takes the directory's only secret certificate.

    Raises
    ------
    ConfigError
        A missing directory or secret, a secret readable by others, a malformed certificate, or
        several secrets and no ``name``.
    """
    path = check_key_dir(key_dir)
    if name is None:
        secrets = sorted(path.glob(f"*{SECRET_SUFFIX}"))
        if len(secrets) != 1:
            found = [p.name for p in secrets] or "none"
            raise ConfigError(
                f"key directory {str(path)!r} must hold exactly one secret key when no key name "
                f"is given, found {found}; pass --key-name NAME or {_KEYS_HINT}"
            )
        secret_file = secrets[0]
        name = secret_file.name[: -len(SECRET_SUFFIX)]
    else:
        secret_file = path / f"{check_key_name(name, 'key_name')}{SECRET_SUFFIX}"
    if not secret_file.is_file():
        raise ConfigError(f"no secret key {str(secret_file)!r} in {str(path)!r}; {_KEYS_HINT}")
    public, secret = read_certificate(secret_file, secret=True)
    return CurveIdentity(name=name, public=public, secret=secret, path=secret_file)


def allow_key(key_dir: str | os.PathLike, certificate: str | os.PathLike) -> Path:
    """Copy a peer's public certificate into ``key_dir/allowed/`` (made if missing).

    Raises
    ------
    ConfigError
        A malformed certificate, a secret certificate (only public keys are shared), or another
        key already allowed under the same file name.
    """
    path = check_key_dir(key_dir, "DIR")
    source = Path(certificate).expanduser()
    public, secret = read_certificate(source, secret=False)
    if secret is not None:
        raise ConfigError(
            f"{str(source)!r} is a secret certificate: allow the peer's public "
            f"{PUBLIC_SUFFIX} file instead, and keep the secret on its machine"
        )
    stem = (
        source.name[: -len(PUBLIC_SUFFIX)] if source.name.endswith(PUBLIC_SUFFIX) else source.stem
    )
    target = path / ALLOWED_DIR / f"{check_key_name(stem, 'certificate name')}{PUBLIC_SUFFIX}"
    target.parent.mkdir(mode=0o700, exist_ok=True)
    if target.exists() and read_certificate(target, secret=False)[0] != public:
        raise ConfigError(
            f"{str(target)!r} already allows another key; rename {source.name!r} or remove the "
            "old certificate first"
        )
    shutil.copyfile(source, target)
    return target


def allowed_keys(key_dir: str | os.PathLike) -> dict[bytes, str]:
    """The allow-list: Z85 public key -> certificate file name (empty without ``allowed/``).

    Raises
    ------
    ConfigError
        A malformed certificate in the allow-list (named), so no key is trusted by mistake.
    """
    folder = Path(key_dir) / ALLOWED_DIR
    if not folder.is_dir():
        return {}
    keys: dict[bytes, str] = {}
    for cert in sorted(folder.glob(f"*{PUBLIC_SUFFIX}")):
        keys[read_certificate(cert, secret=False)[0]] = cert.name
    return keys


def public_key(key_dir: str | os.PathLike, ref: str) -> bytes:
    """The Z85 public key named by ``ref``: a machine name (``NAME.key`` in ``key_dir`` or in
    its allow-list) or a certificate file's path."""
    path = Path(key_dir)
    for cert in (path / f"{ref}{PUBLIC_SUFFIX}", path / ALLOWED_DIR / f"{ref}{PUBLIC_SUFFIX}"):
        if _NAME.match(ref) and cert.is_file():
            return read_certificate(cert, secret=False)[0]
    if Path(ref).expanduser().is_file():
        return read_certificate(Path(ref).expanduser(), secret=False)[0]
    raise ConfigError(
        f"server key {ref!r} is neither a machine name in {str(path)!r} (NAME{PUBLIC_SUFFIX} or "
        f"{ALLOWED_DIR}/NAME{PUBLIC_SUFFIX}) nor a certificate file; allow the server's public "
        "key with `mindeye-rt keys DIR --allow SERVER.key`"
    )
