#!/usr/bin/python3
"""The SMTP server of the notification tests (started by ci/servers.d/70-smtp.sh).

Debian's aiosmtpd (python3-aiosmtpd) on HOST:PORT, plain SMTP, writing every accepted mail
into the Maildir MAILDIR (aiosmtpd's Mailbox handler: one file per mail under new/, with
X-MailFrom and X-RcptTo headers). AUTH PLAIN and LOGIN are offered without TLS and accept
only USER / PASSWORD; a client that does not authenticate may still send (so the tests can
check both plain delivery and that a channel's credentials are sent).

Usage: smtp-server.py HOST PORT MAILDIR USER PASSWORD
"""

import asyncio
import sys

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main() -> None:
    host, port, maildir, user, password = sys.argv[1:6]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    handler = Mailbox(maildir)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                handler,
                authenticator=authenticator,
                auth_required=False,
                auth_require_tls=False,
            ),
            host,
            int(port),
        )
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
