"""Finding profiles: the shipped device classes, the measured ``host`` profile, or a file path."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from profiles._errors import ProfileError
from profiles._schema import DeviceProfile, read_profile_file

__all__ = ["DEVICES", "host_profile_path", "list_profiles", "load_profile"]

DEVICES_DIR = Path(__file__).parent / "devices"
#: The shipped device classes, slowest first.
DEVICES = ("a11", "a12", "a13", "a14", "a15", "a16", "a17pro", "m1", "m2", "m3", "m4")


def host_profile_path() -> Path:
    """Where ``compress profile measure`` writes this machine's profile (the user's data directory)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("compress")) / "profiles" / "host.toml"


def list_profiles() -> list[str]:
    """Names of the shipped device profiles (``host`` is measured per machine and not listed)."""
    return list(DEVICES)


@lru_cache(maxsize=64)
def _load_file(path: str, mtime: float) -> DeviceProfile:
    return read_profile_file(Path(path))


def _load_path(path: Path) -> DeviceProfile:
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {str(path)!r}: {exc.strerror}") from exc
    return _load_file(str(path), mtime)


def load_profile(name_or_path: str | Path | DeviceProfile) -> DeviceProfile:
    """A device profile by name (``a11`` … ``m4``, ``host``), by TOML path, or passed through as is.

    Profiles are cached per file and modification time, so repeated loads are free.
    """
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    if isinstance(name_or_path, Path) or str(name_or_path).endswith(".toml"):
        return _load_path(Path(name_or_path))
    if not isinstance(name_or_path, str):
        raise ProfileError(
            f"device must be a profile name, a .toml path or a DeviceProfile, but got {name_or_path!r}"
        )
    name = name_or_path.strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    if name == "host":
        path = host_profile_path()
        if not path.exists():
            raise ProfileError(
                f"no host profile at {path}; run `compress profile measure` first (about 3 minutes) "
                "to measure this machine"
            )
        return _load_path(path)
    if name not in DEVICES:
        raise ProfileError(
            f"unknown device {name_or_path!r}; known: {', '.join(DEVICES)}, host "
            "(see `compress profile list`)"
        )
    return _load_path(DEVICES_DIR / f"{name}.toml")
