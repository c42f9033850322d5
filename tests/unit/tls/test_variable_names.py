"""The config's $ssl_* names (sans-IO, no ssl import) equal the TLS package's."""

from wsgate.config import variables
from wsgate.tls.variables import SSL_VARIABLES


def test_ssl_variable_names_agree() -> None:
    assert tuple(variables.SSL_VARIABLES) == tuple(SSL_VARIABLES)


def test_ssl_variables_read_the_connection_values() -> None:
    ctx = variables.VarContext()
    table = variables.VariableTable(hostname="h")
    template = variables.compile_template("$ssl_protocol|$ssl_client_verify", table)
    table.finalize()
    ctx.ssl = {"ssl_protocol": "TLSv1.3", "ssl_client_verify": "NONE"}
    assert template.render(ctx) == "TLSv1.3|NONE"
    assert template.render(variables.VarContext()) == "|"
