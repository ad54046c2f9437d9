"""Read settings from environment variables, with safe local defaults."""
import os


def env_str(name: str, default: str = "") -> str:
    """Return the variable's value, or `default` when unset or empty."""
    return os.environ.get(name) or default


def env_int(name: str, default: int) -> int:
    """Return the variable as an int.

    Raises ValueError naming the variable when it is set but not a whole number.
    """
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"Environment variable {name}={raw!r} must be a whole number") from None


def env_bool(name: str, default: bool) -> bool:
    """Return True for 1/true/yes/on, False for 0/false/no/off (any case)."""
    raw = os.environ.get(name)
    if not raw:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}
