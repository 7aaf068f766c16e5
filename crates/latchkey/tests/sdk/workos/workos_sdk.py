"""The WorkOS Python SDK, unchanged, against Latchkey: only its base URL, API key and client
id are set. Driven by the HTTP suite (sdk_workos.rs), which answers on stdin what only the
e-mail carries. Every field read is checked; any difference exits non-zero, saying what.
(Not named workos.py, which would hide the package it imports.)"""

import base64
import json
import os
import sys
import urllib.request
from datetime import datetime, timezone

import jwt
from workos import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitExceededError,
    UnprocessableEntityError,
    WorkOSClient,
)
from workos._errors import APIError

BASE = os.environ["WORKOS_BASE_URL"]
API_KEY = os.environ["WORKOS_API_KEY"]
CLIENT_ID = os.environ["WORKOS_CLIENT_ID"]
CALLBACK = os.environ["CALLBACK"]
ORG_ID = os.environ["ORG_ID"]
LINK_EMAIL = os.environ["LINK_EMAIL"]
CODE_EMAIL = os.environ["CODE_EMAIL"]
LIMIT_EMAIL = os.environ["LIMIT_EMAIL"]
UNKNOWN_SUFFIX = "0" * 26


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def equal(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def ask(kind, arg):
    """Asks the test for what only the e-mail (or a browser) has."""
    print(f"NEED {kind} {arg}", flush=True)
    answer = sys.stdin.readline()
    check(answer, f"no answer to {kind}")
    return answer.strip()


def raises(cls, call, what):
    try:
        call()
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001
        fail(f"{what}: raised {type(e).__name__} ({e}), want {cls.__name__}")
    fail(f"{what}: no error, want {cls.__name__}")


def when(value, what):
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        fail(f"{what} is not an ISO 8601 time: {value!r}")
    check(parsed.tzinfo is not None, f"{what} has no time zone: {value!r}")
    return parsed


def verify(token, jwks_url):
    with urllib.request.urlopen(jwks_url) as res:
        keys = json.load(res)["keys"]
    header = jwt.get_unverified_header(token)
    key = next((k for k in keys if k.get("kid") == header.get("kid")), None)
    check(key is not None, f"no key {header.get('kid')} at {jwks_url}")
    claims = jwt.decode(
        token, key=jwt.PyJWK(key).key, algorithms=[header["alg"]], options={"verify_aud": False}
    )
    equal(claims["client_id"], CLIENT_ID, f"client_id of the access token ({jwks_url})")
    return claims


workos = WorkOSClient(api_key=API_KEY, client_id=CLIENT_ID, base_url=BASE)


def passwordless_then_sso():
    session = workos.passwordless.create_session(
        email=LINK_EMAIL, type="MagicLink", redirect_uri=CALLBACK, state="st-python", expires_in=900
    )
    equal(session.object, "passwordless_session", "session object")
    check(session.id.startswith("passwordless_session_"), f"session id {session.id}")
    equal(session.email, LINK_EMAIL, "session email")
    check(session.link.startswith(BASE + "/l/"), f"session link {session.link}")
    lifetime = (when(session.expires_at, "expires_at") - datetime.now(timezone.utc)).total_seconds()
    # The server's clock stands still from the test's start: allow for the time since.
    check(780 < lifetime <= 905, f"session lives {lifetime} s, want 900")
    equal(ask("mails", LINK_EMAIL), "0", "e-mails sent by create_session")

    equal(workos.passwordless.send_session(session.id), True, "send_session")
    equal(ask("mail-link", LINK_EMAIL), session.link, "the e-mailed link")
    equal(workos.passwordless.send_session(session.id), True, "send_session again")

    location = ask("press", session.link)
    check(location.startswith(CALLBACK + "?"), f"redirect {location}")
    params = dict(p.split("=", 1) for p in location.split("?", 1)[1].split("&"))
    equal(params.get("state"), "st-python", "state in the redirect")
    code = params.get("code")
    check(code, f"no code in {location}")

    answer = workos.sso.get_profile_and_token(code=code)
    equal(answer.token_type, "Bearer", "token_type")
    check(answer.expires_in > 0, f"expires_in {answer.expires_in}")
    profile = answer.profile
    equal(profile.object, "profile", "profile object")
    check(profile.id.startswith("prof_"), f"profile id {profile.id}")
    equal(profile.email, LINK_EMAIL, "profile email")
    equal(profile.organization_id, ORG_ID, "profile organization_id")
    equal(profile.connection_type.value, "MagicLink", "connection_type")
    check(profile.idp_id.startswith("user_"), f"idp_id {profile.idp_id}")
    equal(profile.raw_attributes.get("email"), LINK_EMAIL, "raw_attributes.email")
    equal(verify(answer.access_token, f"{BASE}/sso/jwks/{CLIENT_ID}")["org_id"], ORG_ID, "org_id claim")

    again = workos.sso.get_profile(access_token=answer.access_token)
    equal((again.id, again.email, again.organization_id), (profile.id, profile.email, ORG_ID), "get_profile")
    e = raises(BadRequestError, lambda: workos.sso.get_profile_and_token(code=code), "a code used twice")
    equal(e.error, "invalid_grant", "error of a used code")
    raises(AuthenticationError, lambda: workos.sso.get_profile(access_token="not-a-token"), "a bad token")
    return profile.idp_id


def magic_auth():
    created = workos.user_management.create_magic_auth(email=CODE_EMAIL)
    equal(created.object, "magic_auth", "magic_auth object")
    check(created.id.startswith("magic_auth_"), f"magic_auth id {created.id}")
    check(created.user_id.startswith("user_"), f"user_id {created.user_id}")
    equal(created.email, CODE_EMAIL, "magic_auth email")
    check(created.expires_at > created.created_at, "expires_at after created_at")
    read = workos.user_management.get_magic_auth(created.id)
    equal((read.id, read.user_id, read.email), (created.id, created.user_id, CODE_EMAIL), "get_magic_auth")

    code = ask("mail-code", CODE_EMAIL)
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    e = raises(
        BadRequestError,
        lambda: workos.user_management.authenticate_with_magic_auth(code=wrong, email=CODE_EMAIL),
        "a wrong code",
    )
    equal(e.code, "invalid_one_time_code", "code of a wrong code")

    auth = workos.user_management.authenticate_with_magic_auth(code=code, email=CODE_EMAIL)
    user = auth.user
    equal((user.object, user.id, user.email), ("user", created.user_id, CODE_EMAIL), "the user")
    equal(user.email_verified, True, "email_verified")
    check(user.last_sign_in_at is not None, "last_sign_in_at")
    check(isinstance(user.created_at, datetime) and isinstance(user.updated_at, datetime), "times")
    equal(auth.authentication_method.value, "MagicAuth", "authentication_method")
    check(auth.refresh_token, "refresh_token")
    for url in (f"{BASE}/sso/jwks/{CLIENT_ID}", f"{BASE}/oauth/jwks"):
        equal(verify(auth.access_token, url)["sub"], user.id, f"sub of the access token ({url})")
    raises(
        BadRequestError,
        lambda: workos.user_management.authenticate_with_magic_auth(code=code, email=CODE_EMAIL),
        "a code used twice",
    )

    rotated = workos.user_management.authenticate_with_refresh_token(refresh_token=auth.refresh_token)
    equal(rotated.user.id, user.id, "user of the refreshed tokens")
    check(rotated.refresh_token and rotated.refresh_token != auth.refresh_token, "a new refresh token")
    e = raises(
        BadRequestError,
        lambda: workos.user_management.authenticate_with_refresh_token(refresh_token=auth.refresh_token),
        "a rotated-out refresh token",
    )
    equal(e.error, "invalid_grant", "error of a rotated-out refresh token")
    return user.id


def users(link_user, code_user):
    got = workos.user_management.get_user(code_user)
    equal((got.id, got.email), (code_user, CODE_EMAIL), "get_user")
    first = workos.user_management.list_users(limit=1)
    equal(len(first.data), 1, "a page of one")
    check(first.list_metadata.after, "a cursor after the first page")
    seen = [u.id for u in first.auto_paging_iter()]
    check({link_user, code_user} <= set(seen), f"every user listed: {seen}")
    equal(len(seen), len(set(seen)), "no user twice")
    by_email = workos.user_management.list_users(email=CODE_EMAIL)
    equal([u.id for u in by_email.data], [code_user], "users by e-mail")


def errors():
    wrong_key = WorkOSClient(api_key="lks_wrong", client_id=CLIENT_ID, base_url=BASE)
    raises(
        AuthenticationError,
        lambda: wrong_key.passwordless.create_session(email=LINK_EMAIL, type="MagicLink"),
        "a wrong API key",
    )
    raises(NotFoundError, lambda: workos.user_management.get_magic_auth("magic_auth_" + UNKNOWN_SUFFIX), "unknown magic_auth")
    raises(NotFoundError, lambda: workos.user_management.get_user("user_" + UNKNOWN_SUFFIX), "unknown user")
    raises(NotFoundError, lambda: workos.passwordless.send_session("passwordless_session_x"), "unknown session")
    e = raises(
        UnprocessableEntityError,
        lambda: workos.passwordless.create_session(
            email=LINK_EMAIL, type="MagicLink", redirect_uri="https://elsewhere.example/cb"
        ),
        "a redirect URI off the allow list",
    )
    check({"field": "redirect_uri", "code": "redirect_uri_not_allowed"} in (e.errors or []), f"errors {e.errors}")
    e = raises(
        UnprocessableEntityError,
        lambda: workos.passwordless.create_session(email=LINK_EMAIL, type="MagicLink", expires_in=899),
        "expires_in under 900",
    )
    check({"field": "expires_in", "code": "expires_in_out_of_range"} in (e.errors or []), f"errors {e.errors}")
    raises(NotFoundError, lambda: workos.request(method="get", path=("sso", "nothing")), "an unknown path")
    e = raises(APIError, lambda: workos.request(method="delete", path=("passwordless", "sessions")), "a wrong method")
    equal(e.status_code, 405, "status of a wrong method")
    check(e.response_json is not None and e.code == "method_not_allowed", f"405 body {e.raw_body!r}")

    # Our limits, WorkOS's shape: 3 sign-ins a minute per address. No retries, so the 429 shows.
    impatient = WorkOSClient(api_key=API_KEY, client_id=CLIENT_ID, base_url=BASE, max_retries=0)
    for _ in range(3):
        impatient.passwordless.create_session(email=LIMIT_EMAIL, type="MagicLink")
    e = raises(
        RateLimitExceededError,
        lambda: impatient.passwordless.create_session(email=LIMIT_EMAIL, type="MagicLink"),
        "a fourth sign-in within a minute",
    )
    check(e.retry_after and e.retry_after > 0, f"retry_after {e.retry_after}")


link_user = passwordless_then_sso()
code_user = magic_auth()
users(link_user, code_user)
errors()
print("OK", flush=True)
