"""Per-account secrets for the hello (pure). The config layer reads them from a file or the environment."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

# Compared against when the account is unknown, so that a wrong account costs the same time as a wrong
# secret and account names cannot be probed by timing.
_DUMMY = b"\x00" * 32


class Credentials:
    """account -> secret; `check` compares in constant time (hmac.compare_digest)."""

    def __init__(self, secrets: Mapping[str, str | bytes]) -> None:
        self._secrets = {
            account: secret.encode() if isinstance(secret, str) else bytes(secret)
            for account, secret in secrets.items()
        }

    def check(self, account: str, secret: str) -> bool:
        expected = self._secrets.get(account)
        offered = secret.encode()
        if expected is None:
            hmac.compare_digest(_DUMMY, offered)
            return False
        return hmac.compare_digest(expected, offered)

    def knows(self, account: str) -> bool:
        """Whether the account exists (the admin socket's hello names one without its secret: the socket's
        file mode is the credential there)."""
        return account in self._secrets

    def accounts(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def changed(self, secrets: Mapping[str, str | bytes]) -> list[str]:
        """The accounts whose secret differs in `secrets` (added, removed or rotated)."""
        new = {a: s.encode() if isinstance(s, str) else bytes(s) for a, s in secrets.items()}
        return sorted(a for a in new.keys() | self._secrets.keys() if new.get(a) != self._secrets.get(a))

    def update(self, secrets: Mapping[str, str | bytes]) -> None:
        """A reload's accounts: connections already authenticated keep going; new hellos see these."""
        self._secrets = {
            account: secret.encode() if isinstance(secret, str) else bytes(secret)
            for account, secret in secrets.items()
        }
