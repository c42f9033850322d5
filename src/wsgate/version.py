"""wsgate's version and the nginx version it mirrors in behaviour."""

__version__ = "0.1.0"
# The nginx release whose behaviour wsgate follows (Debian 12's nginx-light).
NGINX_COMPAT = "1.22.1"
