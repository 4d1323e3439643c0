"""`backstate logs`, `orgs`, `keys`, `tokens generate`, `identity-providers` (with the
presets) and `token-providers`."""

from __future__ import annotations

import json
import re

import httpx
import jwt

from tests.server.test_e2e import Server

from .conftest import Cli, deploy_greeter


def test_logs_get(cli: Cli, name: str) -> None:
    version = deploy_greeter(cli, name)
    cli("instances", "create", "-m", name, "-i", "loud")
    for text in ("one", "two", "three"):
        cli(
            "instances",
            "send-event",
            "-m",
            name,
            "-i",
            "loud",
            "-e",
            f'{{"type": "say", "text": "{text}"}}',
        )

    lines = cli("logs", "get", "-m", name, "--from", "-5m").lines
    assert [line.split("  ", 1)[1] for line in lines] == [
        f"{name}/loud  stdout  said {text}" for text in ("one", "two", "three")
    ]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  ", line) for line in lines)

    entries = cli("--json", "logs", "get", "-m", name, "-i", "loud").json()["logs"]
    assert [e["log"] for e in entries] == ["said one", "said two", "said three"]
    assert {e["machineName"] for e in entries} == {name}
    assert len(cli("--json", "logs", "get", "-m", name, "-v", version).json()["logs"]) == 3
    assert cli("--json", "logs", "get", "-m", name, "-v", "ver_other").json()["logs"] == []

    clean = cli("logs", "get", "-m", name, "--clean").lines
    assert clean[0].startswith(f"== {name}/loud (ver_") and clean[0].endswith(" stdout ==")
    assert clean[1:] == ["said one", "said two", "said three"]

    assert cli("logs", "get", "-m", name, "--from", "-5m", "--to", "1ms").stderr.strip() == (
        "no log entries"
    )
    bad = cli("logs", "get", "--from", "yesterday", ok=False)
    assert bad.status == 2 and bad.error.endswith("(usage)")


def test_logs_watch_catches_up_then_follows(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    cli("instances", "create", "-m", name, "-i", "w")
    cli("instances", "send-event", "-m", name, "-i", "w", "-e", '{"type": "say", "text": "before"}')
    watch = cli.popen("--json", "logs", "watch", "-m", name, "--interval", "200ms")
    try:
        assert watch.stdout is not None
        assert json.loads(watch.stdout.readline())["log"] == "said before"
        cli(
            "instances",
            "send-event",
            "-m",
            name,
            "-i",
            "w",
            "-e",
            '{"type": "say", "text": "after"}',
        )
        assert json.loads(watch.stdout.readline())["log"] == "said after"
    finally:
        watch.terminate()
        watch.communicate(timeout=10)


def test_keys_and_tokens(cli: Cli, server: Server, name: str) -> None:
    created = cli("--json", "keys", "create", "-n", "ci-key", "--use", "ci").json()
    assert created["id"].startswith("sbk_") and created["key"].startswith("sbsec_")
    people = cli("keys", "create", "-n", "reader", "--scopes", "machines.read", "state.read")
    assert "warning: the secret is shown only now" in people.stderr
    keys = cli("--json", "keys", "list").json()["keys"]
    scopes = {k["name"]: k["scopes"] for k in keys}
    assert set(scopes["ci-key"]) >= {"machines.write", "machine-versions.write"}
    assert sorted(scopes["reader"]) == ["machines.read", "state.read"]
    assert cli("keys", "list").lines[0].split() == ["key", "name", "scopes", "created", "(UTC)"]

    # The CI key deploys machines but may not read instances.
    ci = ["--key-id", created["id"], "--secret", created["key"]]
    deploy_greeter(cli, name, *ci)
    refused = cli("instances", "list", "-m", name, *ci, ok=False)
    assert refused.error.endswith("(missing-scope)")
    assert refused.error.count("missing-scope") == 1  # the code once, not in the text too

    token = cli(
        "tokens", "generate", *ci, "--claims", '{"sub": "user-1"}', "--expires", "2h"
    ).stdout.strip()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, created["key"], algorithms=["HS256"], audience="https://api.statebacked.dev/"
    )
    assert header["kid"] == created["id"] and claims["act"] == {"sub": "user-1"}
    assert claims["exp"] - claims["iat"] == 7200
    listed = httpx.get(f"{server.url}/machines", headers={"authorization": f"Bearer {token}"})
    assert listed.status_code == 200

    cli("keys", "delete", "-k", created["id"], "--yes")
    gone = cli("machines", "list", *ci, ok=False)
    assert gone.status == 1 and gone.error.startswith("error: ")
    assert created["id"] not in {k["id"] for k in cli("--json", "keys", "list").json()["keys"]}


def test_orgs(cli: Cli) -> None:
    orgs = cli("--json", "orgs", "list").json()["orgs"]
    assert len(orgs) == 1 and orgs[0]["id"].startswith("org_")
    created = cli("--json", "orgs", "create", "-n", "second").json()
    assert created["id"].startswith("org_") and created["adminKey"]["key"].startswith("sbsec_")
    # The new org's admin key reaches only the new org.
    theirs = ["--key-id", created["adminKey"]["id"], "--secret", created["adminKey"]["key"]]
    assert cli("--json", "machines", "list", *theirs).json() == {"machines": []}


def test_identity_and_token_providers(cli: Cli) -> None:
    cli(
        "identity-providers",
        "upsert",
        "--preset",
        "supabase",
        "--project",
        "abc",
        "--jwt-secret",
        "s3cret",
    )
    cli(
        "identity-providers",
        "upsert",
        "--preset",
        "auth0",
        "--domain",
        "me.auth0.com",
        "--mapping",
        '{"sub.$": "$.sub", "email.$": "$.email"}',
    )
    cli(
        "identity-providers",
        "upsert",
        "--preset",
        "cognito",
        "--user-pool-id",
        "pool",
        "--region",
        "eu-west-1",
    )
    cli(
        "identity-providers",
        "upsert",
        "--issuer",
        "https://mine.example",
        "--algorithm",
        "HS256",
        "--key",
        "k",
        "--mapping",
        '{"sub.$": "$.sub"}',
    )
    idps = {
        i["iss"]: i for i in cli("--json", "identity-providers", "list").json()["identityProviders"]
    }
    supabase = idps["https://abc.supabase.co/auth/v1"]
    assert (supabase["aud"], supabase["algs"], supabase["mapping"]) == (
        "authenticated",
        ["HS256"],
        {"sub.$": "$.sub"},
    )
    auth0 = idps["https://me.auth0.com/"]
    assert (auth0["aud"], auth0["algs"], auth0["jwksUrl"]) == (
        "https://me.auth0.com/api/v2/",
        ["RS256"],
        "https://me.auth0.com/.well-known/jwks.json",
    )
    assert auth0["mapping"] == {"sub.$": "$.sub", "email.$": "$.email"}
    cognito = idps["https://cognito-idp.eu-west-1.amazonaws.com/pool"]
    assert (
        cognito["jwksUrl"]
        == "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json"
    )

    incomplete = cli("identity-providers", "upsert", "--preset", "auth0", ok=False)
    assert incomplete.status == 2 and "--domain" in incomplete.error
    cli("identity-providers", "delete", "--issuer", "https://mine.example", "--yes")
    assert "https://mine.example" not in {
        i["iss"] for i in cli("--json", "identity-providers", "list").json()["identityProviders"]
    }

    key = cli("--json", "keys", "create", "-n", "exchange").json()["id"]
    cli(
        "token-providers",
        "upsert",
        "--service",
        "my-app",
        "-k",
        key,
        "--mapping",
        '{"sub.$": "$.sub"}',
    )
    providers = cli("--json", "token-providers", "list").json()["tokenProviders"]
    assert {"service": "my-app", "keyId": key, "mapping": {"sub.$": "$.sub"}} in providers
    assert "my-app" in cli("token-providers", "list").stdout
    cli("token-providers", "delete", "--service", "my-app", input="my-app\n")
    providers = cli("--json", "token-providers", "list").json()["tokenProviders"]
    assert "my-app" not in {p["service"] for p in providers}
