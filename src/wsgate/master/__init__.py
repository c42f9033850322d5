"""Process model: master, workers, signals, reloads, pid file."""
