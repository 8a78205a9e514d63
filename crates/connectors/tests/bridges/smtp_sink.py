"""An SMTP sink for the email bridge's tests (started by mail_servers.rs).

It listens on 127.0.0.1 on a port the kernel picks, requires AUTH (PLAIN or LOGIN) as the one
user it is given, and writes each accepted message as <out>/<n>.json (mail_from, rcpt_to, and
the message's raw bytes in base64), renamed into place whole so a reader never sees half a file.
Once it listens, it writes the port to <out>/../smtp.port the same way.

usage: smtp_sink.py OUT_DIR plain|starttls|tls CERT KEY USER PASSWORD
"""

import asyncio
import base64
import itertools
import json
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def write_whole(path, text):
    """Writes `text` to `path` through a temporary name, so it appears complete or not at all."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
    os.rename(temporary, path)


class Sink:
    """Accepts every message and keeps it as a file, numbered in the order of acceptance."""

    def __init__(self, out):
        self.out = out
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        message = {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "data": base64.b64encode(envelope.original_content).decode("ascii"),
        }
        path = os.path.join(self.out, "%06d.json" % next(self.numbers))
        write_whole(path, json.dumps(message))
        return "250 OK"


def authenticator(user, password):
    """Accepts the mailbox's own credentials only, as a real submission server would."""

    def check(server, session, envelope, mechanism, auth_data):
        valid = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd answers a refusal with 535 itself.
        return AuthResult(success=valid, handled=False)

    return check


async def serve(out, security, cert, key, user, password):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    starttls = security == "starttls"
    sink = Sink(out)  # one for all connections, numbering their messages in one sequence

    def session():
        return SMTP(
            sink,
            hostname="localhost",
            tls_context=context if starttls else None,
            require_starttls=starttls,
            # Over implicit TLS the whole connection is encrypted, which aiosmtpd cannot see.
            auth_require_tls=starttls,
            auth_required=True,
            authenticator=authenticator(user, password),
        )

    implicit = context if security == "tls" else None
    server = await asyncio.get_running_loop().create_server(
        session, "127.0.0.1", 0, ssl=implicit
    )
    port = server.sockets[0].getsockname()[1]
    write_whole(os.path.join(os.path.dirname(out), "smtp.port"), str(port))
    async with server:
        await server.serve_forever()


def main():
    out, security, cert, key, user, password = sys.argv[1:]
    if security not in ("plain", "starttls", "tls"):
        sys.exit("security must be plain, starttls or tls, not " + security)
    # AUTH without STARTTLS in the plain and implicit TLS modes is what the tests want.
    warnings.simplefilter("ignore")
    asyncio.run(serve(out, security, cert, key, user, password))


if __name__ == "__main__":
    main()
