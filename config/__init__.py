"""ticketd settings: one TOML file plus TICKETD_<SECTION>__<KEY> environment overrides.

    settings = load_settings()          # $TICKETD_CONFIG, or defaults + environment
    settings.imap.port                  # checked and typed; secrets are SecretStr
    print(render_effective(settings))   # what is in effect, secrets as "***"

Any mistake raises ConfigError naming the file (or variable), the key and the reason;
a command line exits with EX_CONFIG on it.
"""

from .errors import EX_CONFIG, ConfigError, Problem
from .loader import load_settings
from .render import render_effective
from .schema import Settings

__all__ = ["EX_CONFIG", "ConfigError", "Problem", "Settings", "load_settings", "render_effective"]
