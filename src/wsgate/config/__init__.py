"""Pure (sans-IO) configuration: nginx's language -> directive table -> frozen model.

Nothing in this package imports asyncio or sockets.
"""

# Public entry points live in wsgate.config.load (load_config, load_config_text,
# config_files), wsgate.config.lexer (parse_file/parse_text) and
# wsgate.config.directives (DIRECTIVES); import them from there.
