"""Process model: master, workers, signals, reloads, pid file."""

from wsgate.master.process import run

__all__ = ["run"]
