"""``backstate orgs``, ``keys``, ``tokens``, ``identity-providers`` and
``token-providers``: who may call the API, and with which tokens."""

from __future__ import annotations

import argparse
import base64
from typing import Any, Literal

from backstate.client import paginate, sign_token

from ._app import Commands, Context
from ._args import UsageError, confirm, duration, json_object, moment
from ._output import compact, when

# The scopes State Backed's CLI accepts for --scopes, plus the admin ones backstate has.
SCOPES = (
    "events.write",
    "events.read",
    "state.read",
    "instances.read",
    "instances.write",
    "instances.admin",
    "indexes.read",
    "machines.read",
    "machines.write",
    "machines.admin",
    "machine-versions.read",
    "machine-versions.write",
    "analytics.read",
    "org.read",
    "org.write",
    "org.keys.write",
    "org-members.write",
    "logs.read",
    "tokens.admin",
    "org.secrets.admin",
)
ALGORITHMS = (
    *(f"{family}{bits}" for family in ("HS", "RS", "PS", "ES") for bits in (256, 384, 512)),
    "EdDSA",
)
DEFAULT_TOKEN_LIFETIME = "24h"  # smply's
DEFAULT_PRESET_MAPPING = {"sub.$": "$.sub"}


def register(commands: Commands) -> None:
    orgs = commands.group("orgs", "list and create orgs")
    orgs.command(
        "list", "the orgs your key reaches", list_orgs, epilog="example: backstate orgs list"
    )
    org = orgs.command(
        "create",
        "create an org (with its admin key, shown once)",
        create_org,
        epilog="example: backstate orgs create -n staging",
    )
    org.add_argument("-n", "--name", required=True, help="the new org's name")
    org.add_argument(
        "--no-anonymous-access",
        dest="anonymous",
        action="store_false",
        help="do not set up anonymous sessions (State Backed's default is to)",
    )

    keys = commands.group("keys", "list, create and delete API keys")
    keys.command("list", "the org's keys", list_keys, epilog="example: backstate keys list")
    key = keys.command(
        "create",
        "create a key (its secret is shown once)",
        create_key,
        epilog="example: backstate keys create -n web-server --use production",
    )
    key.add_argument("-n", "--name", required=True, help="a name that says what the key is for")
    which = key.add_mutually_exclusive_group()
    which.add_argument(
        "-u",
        "--use",
        choices=("production", "ci"),
        help="a preset: production (events, state, instances, indexes) or ci (machines "
        "and versions); the default",
    )
    which.add_argument(
        "--scopes",
        nargs="+",
        choices=SCOPES,
        metavar="SCOPE",
        help=f"the key's scopes, instead of a preset: {', '.join(SCOPES)}",
    )
    delete = keys.command(
        "delete",
        "delete a key: its tokens stop working",
        delete_key,
        epilog="example: backstate keys delete -k sbk_... --yes",
    )
    delete.add_argument("-k", "--key", required=True, help="the key id")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask to retype the id")

    tokens = commands.group("tokens", "sign tokens for your users")
    generate = tokens.command(
        "generate",
        "sign a token with a key (--key-id and --secret, default: the credentials file's) "
        "whose act claims are --claims: the auth context authorizers see",
        generate_token,
        epilog="""example: backstate tokens generate --claims '{"sub": "user-1"}' --expires 1h""",
    )
    generate.add_argument(
        "--claims", required=True, type=json_object, help="the token's claims, as JSON"
    )
    generate.add_argument(
        "--expires",
        default=DEFAULT_TOKEN_LIFETIME,
        help=f"a lifetime (30m, 7d) or an ISO-8601 time (default {DEFAULT_TOKEN_LIFETIME})",
    )

    idps = commands.group(
        "identity-providers", "trust other identity providers' tokens (token exchange)"
    )
    idps.command(
        "list",
        "the org's identity providers",
        list_idps,
        epilog="example: backstate identity-providers list",
    )
    upsert = idps.command(
        "upsert",
        "add or change an identity provider (keyed by audience and issuer)",
        upsert_idp,
        epilog="presets, as smply's upsert-supabase, upsert-auth0 and upsert-cognito:\n"
        "  --preset supabase --project P --jwt-secret S  aud authenticated, iss "
        "https://P.supabase.co/auth/v1, HS256\n"
        "  --preset auth0 --domain D                  aud https://D/api/v2/, iss https://D/, "
        "RS256, D's JWKS\n"
        "  --preset cognito --user-pool-id U --region R  iss "
        "https://cognito-idp.R.amazonaws.com/U, RS256, its JWKS\n"
        f"a preset's mapping defaults to {compact(DEFAULT_PRESET_MAPPING)}\n"
        """example: backstate identity-providers upsert --preset supabase --project abc """
        """--jwt-secret $SUPABASE_JWT_SECRET""",
    )
    upsert.add_argument(
        "--preset",
        choices=("supabase", "auth0", "cognito"),
        help="fill in a known provider's audience, issuer, algorithms and keys from "
        "--project/--jwt-secret (supabase), --domain (auth0) or --user-pool-id/--region (cognito)",
    )
    upsert.add_argument("--audience", help="the aud claim its tokens carry")
    upsert.add_argument("--issuer", help="the iss claim its tokens carry")
    upsert.add_argument(
        "-l",
        "--algorithm",
        nargs="+",
        choices=ALGORITHMS,
        metavar="ALG",
        dest="algorithms",
        help=f"the signing algorithms its tokens may use: {', '.join(ALGORITHMS)}",
    )
    upsert.add_argument(
        "--mapping", type=json_object, help='claims to keep: {"sub.$": "$.sub", ...}'
    )
    key_source = upsert.add_mutually_exclusive_group()
    key_source.add_argument("-k", "--key", help="the verification key (UTF-8 text)")
    key_source.add_argument("-b", "--base64-key", help="the verification key, base64")
    key_source.add_argument("-j", "--jwks-url", help="where its verification keys are (a JWKS)")
    upsert.add_argument("--project", help="supabase: the project id")
    upsert.add_argument("--jwt-secret", help="supabase: the project's JWT secret")
    upsert.add_argument("--domain", help="auth0: the tenant's domain")
    upsert.add_argument("--user-pool-id", help="cognito: the user pool")
    upsert.add_argument("--region", help="cognito: the pool's AWS region")
    remove = idps.command(
        "delete",
        "stop trusting an identity provider",
        delete_idp,
        epilog="example: backstate identity-providers delete --issuer https://issuer.example.com/ --yes",
    )
    remove.add_argument("--audience", help="the provider's aud")
    remove.add_argument("--issuer", help="the provider's iss")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask")

    providers = commands.group(
        "token-providers", "issue tokens from exchanged identity-provider tokens"
    )
    providers.command(
        "list",
        "the org's token providers",
        list_token_providers,
        epilog="example: backstate token-providers list",
    )
    provider = providers.command(
        "upsert",
        "add or change the token provider of a service",
        upsert_token_provider,
        epilog="""example: backstate token-providers upsert --service my-app -k sbk_... """
        """--mapping '{"sub.$": "$.sub"}'""",
    )
    provider.add_argument("--service", required=True, help="the token provider's name")
    provider.add_argument("-k", "--key", required=True, help="the key id that signs its tokens")
    provider.add_argument(
        "--mapping", required=True, type=json_object, help="act claims from IdP claims"
    )
    drop = providers.command(
        "delete",
        "delete a service's token provider",
        delete_token_provider,
        epilog="example: backstate token-providers delete --service my-app --yes",
    )
    drop.add_argument("--service", required=True, help="the token provider's name")
    drop.add_argument("-y", "--yes", action="store_true", help="do not ask to retype the name")


# -- orgs and keys -------------------------------------------------------------------------


def list_orgs(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    orgs = list(paginate(client.orgs.list))
    if context.json:
        context.output.document({"orgs": orgs})
        return
    context.output.table(
        ("org", "name", "role", "created (UTC)"),
        ((o.id, o.name, o.role, when(o.created_at)) for o in orgs),
        empty="no orgs",
    )


def create_org(context: Context, args: argparse.Namespace) -> None:
    created = context.client().orgs.create(args.name, allow_anonymous_access=args.anonymous)
    admin = created.admin_key
    if context.json:
        context.output.document(
            {"id": created.id, "adminKey": {"id": admin.id, "key": admin.key} if admin else None}
        )
        return
    context.output.success(f"created org {created.id}")
    if admin is not None:
        context.output.warn("the admin key's secret is shown only now: keep it safe")
        context.output.fields([("key id", admin.id), ("secret", admin.key)])


def list_keys(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    keys = list(paginate(client.keys.list))
    if context.json:
        context.output.document({"keys": keys})
        return
    context.output.table(
        ("key", "name", "scopes", "created (UTC)"),
        ((k.id, k.name, " ".join(k.scopes), when(k.created_at)) for k in keys),
        empty="no keys",
    )


def create_key(context: Context, args: argparse.Namespace) -> None:
    use: Literal["production", "ci"] | None = args.use or (None if args.scopes else "production")
    created = context.client().keys.create(args.name, scopes=args.scopes, use=use)
    if context.json:
        context.output.document({"id": created.id, "key": created.key})
        return
    context.output.warn("the secret is shown only now: keep it safe")
    context.output.fields([("key id", created.id), ("secret", created.key)])


def delete_key(context: Context, args: argparse.Namespace) -> None:
    confirm(args.key, "Every token the key signed stops working, for good", yes=args.yes)
    context.client().keys.delete(args.key)
    if context.json:
        context.output.document({"deleted": args.key})
    context.output.success(f"deleted key {args.key}")


def generate_token(context: Context, args: argparse.Namespace) -> None:
    key_id, secret = context.signing_key()
    try:
        lifetime = duration(args.expires)
        expires: dict[str, Any] = {"expires_in_s": int(lifetime.total_seconds())}
    except argparse.ArgumentTypeError:
        try:
            expires = {"expires_at": moment(args.expires)}
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--expires: {exc}") from None
    token = sign_token(key_id, secret, args.claims, **expires)
    if context.json:
        context.output.document({"token": token})
    else:
        context.output.line(token)


# -- identity and token providers -----------------------------------------------------------------


def list_idps(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    idps = list(paginate(client.identity_providers.list))
    if context.json:
        context.output.document({"identityProviders": idps})
        return
    context.output.table(
        ("audience", "issuer", "algorithms", "jwks", "mapping"),
        (
            (i.aud or "", i.iss or "", " ".join(i.algs), i.jwks_url or "", compact(i.mapping))
            for i in idps
        ),
        empty="no identity providers",
    )


def _preset(args: argparse.Namespace) -> dict[str, Any]:
    """What a preset fills in, as smply's ``upsert-supabase|auth0|cognito`` do."""
    if args.preset == "supabase":
        if not (args.project and args.jwt_secret):
            raise UsageError("--preset supabase needs --project and --jwt-secret")
        return {
            "aud": "authenticated",
            "iss": f"https://{args.project}.supabase.co/auth/v1",
            "algs": ["HS256"],
            "key": args.jwt_secret.encode(),
        }
    if args.preset == "auth0":
        if not args.domain:
            raise UsageError("--preset auth0 needs --domain")
        return {
            "aud": f"https://{args.domain}/api/v2/",
            "iss": f"https://{args.domain}/",
            "algs": ["RS256"],
            "jwks_url": f"https://{args.domain}/.well-known/jwks.json",
        }
    if args.preset == "cognito":
        if not (args.user_pool_id and args.region):
            raise UsageError("--preset cognito needs --user-pool-id and --region")
        issuer = f"https://cognito-idp.{args.region}.amazonaws.com/{args.user_pool_id}"
        return {"iss": issuer, "algs": ["RS256"], "jwks_url": f"{issuer}/.well-known/jwks.json"}
    return {}


def upsert_idp(context: Context, args: argparse.Namespace) -> None:
    fields = _preset(args)
    if args.audience:
        fields["aud"] = args.audience
    if args.issuer:
        fields["iss"] = args.issuer
    if args.algorithms:
        fields["algs"] = args.algorithms
    if args.key is not None:
        fields.update(key=args.key.encode(), jwks_url=None)
    elif args.base64_key is not None:
        padded = args.base64_key + "=" * (-len(args.base64_key) % 4)
        try:
            key = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except ValueError:
            raise UsageError("--base64-key is not base64") from None
        fields.update(key=key, jwks_url=None)
    elif args.jwks_url is not None:
        fields.update(jwks_url=args.jwks_url, key=None)
    mapping = args.mapping
    if mapping is None:
        if not args.preset:
            raise UsageError("give --mapping (or a --preset)")
        mapping = DEFAULT_PRESET_MAPPING
    if not (fields.get("aud") or fields.get("iss")):
        raise UsageError("give --audience or --issuer (or both)")
    if not fields.get("algs"):
        raise UsageError("give --algorithm")
    if not (fields.get("key") or fields.get("jwks_url")):
        raise UsageError("give one of --key, --base64-key and --jwks-url")
    context.client().identity_providers.upsert(
        algs=fields["algs"],
        mapping=mapping,
        aud=fields.get("aud"),
        iss=fields.get("iss"),
        key=fields.get("key"),
        jwks_url=fields.get("jwks_url"),
    )
    if context.json:
        context.output.document(
            {
                "aud": fields.get("aud"),
                "iss": fields.get("iss"),
                "algs": fields["algs"],
                "jwksUrl": fields.get("jwks_url"),
                "mapping": mapping,
            }
        )
        return
    names = " ".join(fields[k] for k in ("aud", "iss") if fields.get(k))
    context.output.success(f"saved the identity provider {names} ({' '.join(fields['algs'])})")


def delete_idp(context: Context, args: argparse.Namespace) -> None:
    if not (args.audience or args.issuer):
        raise UsageError("give --audience or --issuer (or both)")
    name = args.audience or args.issuer
    confirm(name, "Exchanges of its tokens stop at once", yes=args.yes)
    context.client().identity_providers.delete(aud=args.audience, iss=args.issuer)
    if context.json:
        context.output.document({"deleted": {"aud": args.audience, "iss": args.issuer}})
    context.output.success(f"deleted the identity provider {name}")


def list_token_providers(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    providers = list(paginate(client.token_providers.list))
    if context.json:
        context.output.document({"tokenProviders": providers})
        return
    context.output.table(
        ("service", "key", "mapping"),
        ((p.service, p.key_id, compact(p.mapping)) for p in providers),
        empty="no token providers",
    )


def upsert_token_provider(context: Context, args: argparse.Namespace) -> None:
    context.client().token_providers.upsert(args.service, key_id=args.key, mapping=args.mapping)
    if context.json:
        context.output.document(
            {"service": args.service, "keyId": args.key, "mapping": args.mapping}
        )
        return
    context.output.success(f"saved the token provider of {args.service}")


def delete_token_provider(context: Context, args: argparse.Namespace) -> None:
    confirm(args.service, "Token exchanges for the service stop at once", yes=args.yes)
    context.client().token_providers.delete(args.service)
    if context.json:
        context.output.document({"deleted": args.service})
    context.output.success(f"deleted the token provider of {args.service}")
