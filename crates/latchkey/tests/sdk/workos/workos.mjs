// The WorkOS Node SDK, unchanged, against Latchkey: only its host, port, API key and client id
// are set. Driven by the HTTP suite (sdk_workos.rs), which answers on stdin what only the
// e-mail carries. Every field read is checked; any difference exits non-zero, saying what.

import { createInterface } from 'node:readline';
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import {
  WorkOS,
  NotFoundException,
  OauthException,
  RateLimitExceededException,
  UnauthorizedException,
  UnprocessableEntityException,
  GenericServerException,
} from '@workos-inc/node';

const env = (name) => {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
};
const BASE = env('WORKOS_BASE_URL');
const API_KEY = env('WORKOS_API_KEY');
const CLIENT_ID = env('WORKOS_CLIENT_ID');
const CALLBACK = env('CALLBACK');
const ORG_ID = env('ORG_ID');
const LINK_EMAIL = env('LINK_EMAIL');
const CODE_EMAIL = env('CODE_EMAIL');
const LIMIT_EMAIL = env('LIMIT_EMAIL');
const UNKNOWN_SUFFIX = '0'.repeat(26);

function fail(message) {
  console.log(`FAIL: ${message}`);
  process.exit(1);
}
const check = (condition, message) => condition || fail(message);
const equal = (got, want, what) =>
  check(JSON.stringify(got) === JSON.stringify(want), `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(kind, arg) {
  console.log(`NEED ${kind} ${arg}`);
  const { value, done } = await lines.next();
  if (done) fail(`no answer to ${kind}`);
  return value.trim();
}

async function raises(cls, call, what) {
  try {
    await call();
  } catch (e) {
    if (e instanceof cls) return e;
    fail(`${what}: threw ${e?.name} (${e?.message}), want ${cls.name}`);
  }
  fail(`${what}: no error, want ${cls.name}`);
}

const url = new URL(BASE);
const options = (more = {}) => ({
  apiHostname: url.hostname,
  port: Number(url.port),
  https: url.protocol === 'https:',
  clientId: CLIENT_ID,
  ...more,
});
const workos = new WorkOS(API_KEY, options());

const b64 = (part) => Buffer.from(part, 'base64url');
async function verify(token, jwksUrl) {
  const [head, payload, signature] = token.split('.');
  const header = JSON.parse(b64(head));
  const { keys } = await (await fetch(jwksUrl)).json();
  const jwk = keys.find((k) => k.kid === header.kid);
  check(jwk, `no key ${header.kid} at ${jwksUrl}`);
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${head}.${payload}`);
  const algorithm = { ES256: 'sha256', RS256: 'sha256', EdDSA: null }[header.alg];
  const ok = verifySignature(algorithm, data, { key, dsaEncoding: 'ieee-p1363' }, b64(signature));
  check(ok, `the access token does not verify against ${jwksUrl}`);
  const claims = JSON.parse(b64(payload));
  equal(claims.client_id, CLIENT_ID, `client_id of the access token (${jwksUrl})`);
  check(claims.exp * 1000 > Date.now(), 'the access token has expired');
  return claims;
}

async function passwordlessThenSso() {
  const session = await workos.passwordless.createSession({
    email: LINK_EMAIL, type: 'MagicLink', redirectURI: CALLBACK, state: 'st-node', expiresIn: 3600,
  });
  equal(session.object, 'passwordless_session', 'session object');
  check(session.id.startsWith('passwordless_session_'), `session id ${session.id}`);
  equal(session.email, LINK_EMAIL, 'session email');
  check(session.link.startsWith(`${BASE}/l/`), `session link ${session.link}`);
  const lifetime = (Date.parse(session.expiresAt) - Date.now()) / 1000;
  // The server's clock stands still from the test's start: allow for the time since.
  check(lifetime > 3480 && lifetime <= 3605, `session lives ${lifetime} s, want 3600`);
  equal(await ask('mails', LINK_EMAIL), '0', 'e-mails sent by createSession');

  equal(await workos.passwordless.sendSession(session.id), { success: true }, 'sendSession');
  equal(await ask('mail-link', LINK_EMAIL), session.link, 'the e-mailed link');
  equal(await workos.passwordless.sendSession(session.id), { success: true }, 'sendSession again');

  const location = new URL(await ask('press', session.link));
  equal(`${location.origin}${location.pathname}`, CALLBACK, 'redirect target');
  equal(location.searchParams.get('state'), 'st-node', 'state in the redirect');
  const code = location.searchParams.get('code');
  check(code, `no code in ${location}`);

  const { accessToken, profile } = await workos.sso.getProfileAndToken({ code, clientId: CLIENT_ID });
  check(profile.id.startsWith('prof_'), `profile id ${profile.id}`);
  equal(profile.email, LINK_EMAIL, 'profile email');
  equal(profile.organizationId, ORG_ID, 'profile organizationId');
  equal(profile.connectionType, 'MagicLink', 'connectionType');
  check(profile.idpId.startsWith('user_'), `idpId ${profile.idpId}`);
  equal(profile.rawAttributes.email, LINK_EMAIL, 'rawAttributes.email');
  equal((await verify(accessToken, `${BASE}/sso/jwks/${CLIENT_ID}`)).org_id, ORG_ID, 'org_id claim');

  const again = await workos.sso.getProfile({ accessToken });
  equal([again.id, again.email, again.organizationId], [profile.id, LINK_EMAIL, ORG_ID], 'getProfile');
  const used = await raises(OauthException, () => workos.sso.getProfileAndToken({ code, clientId: CLIENT_ID }), 'a code used twice');
  equal(used.error, 'invalid_grant', 'error of a used code');
  await raises(UnauthorizedException, () => workos.sso.getProfile({ accessToken: 'not-a-token' }), 'a bad token');
  return profile.idpId;
}

async function magicAuth() {
  const created = await workos.userManagement.createMagicAuth({ email: CODE_EMAIL });
  equal(created.object, 'magic_auth', 'magic_auth object');
  check(created.id.startsWith('magic_auth_'), `magic_auth id ${created.id}`);
  check(created.userId.startsWith('user_'), `userId ${created.userId}`);
  equal(created.email, CODE_EMAIL, 'magic_auth email');
  check(Date.parse(created.expiresAt) > Date.parse(created.createdAt), 'expiresAt after createdAt');
  const read = await workos.userManagement.getMagicAuth(created.id);
  equal([read.id, read.userId, read.email], [created.id, created.userId, CODE_EMAIL], 'getMagicAuth');

  const code = await ask('mail-code', CODE_EMAIL);
  const wrong = code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);
  const refused = await raises(
    OauthException,
    () => workos.userManagement.authenticateWithMagicAuth({ code: wrong, email: CODE_EMAIL }),
    'a wrong code',
  );
  equal(refused.rawData?.code, 'invalid_one_time_code', 'code of a wrong code');

  const auth = await workos.userManagement.authenticateWithMagicAuth({ code, email: CODE_EMAIL });
  const { user } = auth;
  equal([user.object, user.id, user.email], ['user', created.userId, CODE_EMAIL], 'the user');
  equal(user.emailVerified, true, 'emailVerified');
  check(!Number.isNaN(Date.parse(user.lastSignInAt)), `lastSignInAt ${user.lastSignInAt}`);
  check(!Number.isNaN(Date.parse(user.createdAt)) && !Number.isNaN(Date.parse(user.updatedAt)), 'times');
  equal(auth.authenticationMethod, 'MagicAuth', 'authenticationMethod');
  check(auth.refreshToken, 'refreshToken');
  for (const jwks of [workos.userManagement.getJwksUrl(CLIENT_ID), `${BASE}/oauth/jwks`]) {
    equal((await verify(auth.accessToken, jwks)).sub, user.id, `sub of the access token (${jwks})`);
  }
  await raises(
    OauthException,
    () => workos.userManagement.authenticateWithMagicAuth({ code, email: CODE_EMAIL }),
    'a code used twice',
  );

  const rotated = await workos.userManagement.authenticateWithRefreshToken({ refreshToken: auth.refreshToken });
  equal(rotated.user.id, user.id, 'user of the refreshed tokens');
  check(rotated.refreshToken && rotated.refreshToken !== auth.refreshToken, 'a new refresh token');
  const reused = await raises(
    OauthException,
    () => workos.userManagement.authenticateWithRefreshToken({ refreshToken: auth.refreshToken }),
    'a rotated-out refresh token',
  );
  equal(reused.error, 'invalid_grant', 'error of a rotated-out refresh token');
  return user.id;
}

async function users(linkUser, codeUser) {
  const got = await workos.userManagement.getUser(codeUser);
  equal([got.id, got.email], [codeUser, CODE_EMAIL], 'getUser');
  const seen = [];
  let page = await workos.userManagement.listUsers({ limit: 1 });
  equal(page.data.length, 1, 'a page of one');
  check(page.listMetadata.after, 'a cursor after the first page');
  for (;;) {
    seen.push(...page.data.map((u) => u.id));
    if (!page.listMetadata.after) break;
    page = await workos.userManagement.listUsers({ limit: 1, after: page.listMetadata.after });
  }
  check(seen.includes(linkUser) && seen.includes(codeUser), `every user listed: ${seen}`);
  equal(new Set(seen).size, seen.length, 'no user twice');
  const all = await (await workos.userManagement.listUsers()).autoPagination();
  equal(all.map((u) => u.id).sort(), [...seen].sort(), 'autoPagination');
  const byEmail = await workos.userManagement.listUsers({ email: CODE_EMAIL });
  equal(byEmail.data.map((u) => u.id), [codeUser], 'users by e-mail');
}

async function errors() {
  const wrongKey = new WorkOS('lks_wrong', options());
  await raises(
    UnauthorizedException,
    () => wrongKey.passwordless.createSession({ email: LINK_EMAIL, type: 'MagicLink' }),
    'a wrong API key',
  );
  await raises(NotFoundException, () => workos.userManagement.getMagicAuth(`magic_auth_${UNKNOWN_SUFFIX}`), 'unknown magic_auth');
  await raises(NotFoundException, () => workos.userManagement.getUser(`user_${UNKNOWN_SUFFIX}`), 'unknown user');
  await raises(NotFoundException, () => workos.passwordless.sendSession('passwordless_session_x'), 'unknown session');
  let e = await raises(
    UnprocessableEntityException,
    () => workos.passwordless.createSession({ email: LINK_EMAIL, type: 'MagicLink', redirectURI: 'https://elsewhere.example/cb' }),
    'a redirect URI off the allow list',
  );
  equal(e.code, 'invalid_request_parameters', 'code of a redirect URI off the allow list');
  check(e.message.includes('redirect_uri_not_allowed'), `message ${e.message}`);
  e = await raises(
    UnprocessableEntityException,
    () => workos.passwordless.createSession({ email: LINK_EMAIL, type: 'MagicLink', expiresIn: 86401 }),
    'expiresIn over 86400',
  );
  check(e.message.includes('expires_in_out_of_range'), `message ${e.message}`);
  await raises(NotFoundException, () => workos.get('/user_management/nothing'), 'an unknown path');
  e = await raises(GenericServerException, () => workos.put('/user_management/users', {}), 'a wrong method');
  equal(e.status, 405, 'status of a wrong method');

  // Our limits, WorkOS's shape: 3 sign-ins a minute per address. No retries, so the 429 shows.
  const impatient = new WorkOS(API_KEY, options({ maxRetries: 0 }));
  for (let i = 0; i < 3; i++) await impatient.passwordless.createSession({ email: LIMIT_EMAIL, type: 'MagicLink' });
  e = await raises(
    RateLimitExceededException,
    () => impatient.passwordless.createSession({ email: LIMIT_EMAIL, type: 'MagicLink' }),
    'a fourth sign-in within a minute',
  );
  check(e.retryAfter > 0, `retryAfter ${e.retryAfter}`);
}

const linkUser = await passwordlessThenSso();
const codeUser = await magicAuth();
await users(linkUser, codeUser);
await errors();
console.log('OK');
process.exit(0);
