"""Configuration of the taskstate state backend."""

from cistell import ConfigField

from pynenc.conf.config_state_backend import ConfigStateBackend


class ConfigStateBackendTaskstate(ConfigStateBackend):
    """
    Configuration of ``TaskstateStateBackend``.

    Set it as any pynenc setting: ``config_values={"taskstate_url": ...}``,
    a config file, or the environment (``PYNENC__TASKSTATE_URL``, or
    ``PYNENC__CONFIGSTATEBACKENDTASKSTATE__TASKSTATE_URL`` for this class
    only).

    :cvar ConfigField[str] taskstate_url:
        Where the state lives: ``memory://`` (this process only),
        ``sqlite://PATH`` (pynenc's own SQLite file format; shared by every
        process on the host) or ``postgres://user@host:5432/db?schema=name``.
        An empty value falls back to pynenc's ``sqlite_db_path`` setting when
        it is set, else to ``memory://``.
    """

    taskstate_url = ConfigField("")
    sqlite_db_path = ConfigField("")
