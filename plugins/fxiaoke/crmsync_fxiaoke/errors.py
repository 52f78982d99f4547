"""Fxiaoke ``errorCode`` values and the crmsync errors they become.

Business errors arrive as HTTP 200 with ``errorCode != 0``; never branch on ``errorMessage`` (the documentation
says it changes). Codes from the global code table; where the table and the gateway's real answers disagree
(10006, 20017, 10013) both meanings lead to the same action here.
"""

from __future__ import annotations

from collections.abc import Callable

from crmsync import AuthError, ConnectorError, ExitCode, FatalAPIError, RetryableError
from crmsync_fxiaoke.limits import seconds_to_reset

TOKEN_CODES = frozenset({20016, 20005})
"""Token missing, invalid or expired: renew once and repeat the call."""
TRANSIENT_CODES = frozenset({-1, -2, 14001, 30004, 50009})
"""System busy or error, call limit, per-second frequency, service timeout: back off and retry."""
AUTH_CODES = frozenset(
    {10001, 10002, 10006, 10012, 11001, 11002, 11013, 11014, 11015, 15003, 20006, 20014, 20015, 20017, 20020,
     20021, 20022}
)  # fmt: skip
"""Credentials refused, app disabled or not authorised by the tenant: a person must fix them."""
PERMISSION_WORDS = ("权限", "permission")
"""The gateway documents no code for a missing permission; its messages (无此操作的数据权限, 没有客户的列表权限)
are the only sign, so they are read for this one purpose."""
DAILY_QUOTA = 30002
NO_QUOTA = 30003
OFFSET_LIMIT = 10013


class SetupError(ConnectorError):
    """The tenant is not set up for the OpenAPI (no call quota bought): exit 2, a person must act."""

    exit_code = ExitCode.CONFIG


class PermissionRefused(ConnectorError):
    """The operator lacks a permission on an object it must read: exit 2, an administrator must grant it."""

    exit_code = ExitCode.CONFIG


def is_permission_refusal(api_message: str) -> bool:
    return any(word in api_message.lower() for word in PERMISSION_WORDS)


def permission_hint(obj: str, operator: str | None, action: str = "list and view") -> str:
    """What to grant, to whom and where, for an operator refused on ``obj``."""
    who = f"user_id {operator}" if operator else "the operator"
    return (
        f"the operator ({who}) needs the {action} permission on {obj} and data permission over its records: "
        "an administrator grants them to the operator's role in the admin console (permission management: "
        "role permissions for the object, data permissions for its records), or set user_id to a CRM administrator"
    )


class ApiError(FatalAPIError):
    """A business error answer not handled otherwise; on a write it rejects that one record."""

    def __init__(self, message: str, *, code: int, api_message: str, connector: str | None = None) -> None:
        super().__init__(message, connector=connector)
        self.code = code
        self.api_message = api_message


def raise_for(code: int, text: str, api_message: str, *, connector: str, clock: Callable[[], float]) -> None:
    """Raise the crmsync error for a non-zero, non-retried ``errorCode`` (``text`` says where)."""
    if code in TOKEN_CODES or code in AUTH_CODES:
        raise AuthError(
            text,
            connector=connector,
            hint="check app_id, app_secret, permanent_code and user_id, and that the app is enabled for the tenant",
        )
    if code in TRANSIENT_CODES:
        raise RetryableError(text, connector=connector)
    if code == DAILY_QUOTA:
        raise RetryableError(
            f"{text}: the tenant's daily OpenAPI quota is used up",
            connector=connector,
            retry_after=seconds_to_reset(clock()),
            hint="it resets at 00:00 Beijing time; buy more quota or push less per day",
        )
    if code == NO_QUOTA:
        raise SetupError(
            f"{text}: the tenant has bought no OpenAPI call quota",
            connector=connector,
            hint="an administrator must order an 'Open API' resource pack",
        )
    if code == OFFSET_LIMIT:
        raise FatalAPIError(f"{text}: offset beyond 10,000 (paging must use the _id cursor)", connector=connector)
    raise ApiError(text, code=code, api_message=api_message, connector=connector)
