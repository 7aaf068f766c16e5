"""Drives Latchkey's Auth Armor face through the unchanged `autharmor-sdk` 0.1.5, as a
migrating customer would: only the SDK's base URLs, client id and API key are set.

Environment: LATCHKEY_BASE_URL, AUTHARMOR_CLIENT_ID, AUTHARMOR_CLIENT_SECRET.
Standard input, one command a line, each answered by one line on standard output:
  register <registration_id> <registration_validation_token> <email> <context key=value>
      -> "registered <user_id>"
  auth <auth_request_id> <auth_validation_token> <user_id> <email>
      -> "authorized"
  unknown <auth_request_id>
      -> "refused"
Every field the SDK hands back is checked; any difference exits non-zero and says what differed.
"""

import os
import sys

import autharmor_sdk
from autharmor_sdk.config import config


class Mismatch(Exception):
    pass


def expect(what, got, wanted):
    if got != wanted:
        raise Mismatch(f"{what}: got {got!r}, wanted {wanted!r}")


def make_sdk():
    base = os.environ["LATCHKEY_BASE_URL"].rstrip("/")
    config["login_url"] = base
    config["api_url_v3"] = base + "/v3"
    sdk = autharmor_sdk.AuthArmorSDK(
        client_id=os.environ["AUTHARMOR_CLIENT_ID"],
        client_secret=os.environ["AUTHARMOR_CLIENT_SECRET"],
        webauthn_client_id=None,
    )
    # 0.1.5 reads token_expiration before it ever sets it; every user of this version has to
    # start it at 0 so that the first call fetches a token.
    sdk.token_expiration = 0
    return sdk


def register(sdk, registration_id, token, email, context):
    key, _, value = context.partition("=")
    result = sdk.verify_register_request("magiclink", token, registration_id)
    expect("register: verified", result.get("verified"), True)
    details = result["request_details"]
    expect("register: type", details.get("magiclink_email_registration_type"), "new_user")
    expect("register: email_address", details.get("email_address"), email)
    expect("register: username", details.get("username"), email)
    expect("register: context_data", details.get("context_data"), {key: value})
    expect("register: is_replay", details.get("is_replay"), False)
    user_id = details.get("user_id")
    if not isinstance(user_id, str) or not user_id.startswith("user_"):
        raise Mismatch(f"register: user_id {user_id!r}")
    expect("the SDK's token is a JWT", sdk.token.count("."), 2)

    again = sdk.verify_register_request("magiclink", token, registration_id)["request_details"]
    expect("register again: is_replay", again.get("is_replay"), True)
    expect("register again: authorized", again.get("authorized"), False)
    expect("register again: user_id", again.get("user_id"), user_id)
    return f"registered {user_id}"


def auth(sdk, auth_request_id, token, user_id, email):
    result = sdk.verify_auth_request("magiclink", token, auth_request_id)
    expect("auth: verified", result.get("verified"), True)
    expect("auth: profile", result.get("request_details"), {"user_id": user_id, "username": email})
    try:
        sdk.verify_auth_request("magiclink", token, auth_request_id)
    except ValueError as e:
        expect("auth again: refusal", str(e), "Replayed request detected!")
    else:
        raise Mismatch("auth again: the SDK accepted a replay")
    return "authorized"


def unknown(sdk, auth_request_id):
    # The SDK reads validate_auth_response_details without looking at the status: on an
    # error body it fails with a KeyError, which is how a customer sees the refusal.
    try:
        sdk.verify_auth_request("magiclink", "not-a-token", auth_request_id)
    except KeyError as e:
        expect("unknown: missing key", e.args[0], "validate_auth_response_details")
    else:
        raise Mismatch("unknown: the SDK accepted an unknown token")
    return "refused"


COMMANDS = {"register": register, "auth": auth, "unknown": unknown}


def main():
    sdk = make_sdk()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command = COMMANDS.get(words[0])
        if command is None:
            raise Mismatch(f"unknown command {words[0]!r}")
        print(command(sdk, *words[1:]), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        print(f"autharmor.py: {e}", file=sys.stderr)
        sys.exit(1)
