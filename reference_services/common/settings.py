"""Settings shared by several services: the data directory and store URLs."""

from __future__ import annotations

from pathlib import Path

from reference_services.common.config import ConfigError, env_str

STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def data_dir() -> Path:
    """``DATA_DIR`` (default ``./var``): where default SQLite files live."""
    return Path(env_str("DATA_DIR", "./var"))


def store_url(name: str, default_file: str, schemes: tuple[str, ...] = STORE_SCHEMES) -> str:
    """The store URL in variable ``name``, default a SQLite file in ``DATA_DIR``."""
    default = f"sqlite:///{data_dir() / default_file}"
    url = env_str(name, default)
    if not url.startswith(schemes) or url in schemes:
        accepted = ", ".join(s + "..." for s in schemes)
        raise ConfigError(f"{name} must be a URL starting with one of: {accepted}")
    return url
