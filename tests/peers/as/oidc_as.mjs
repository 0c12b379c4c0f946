// Loopback OAuth 2.1 / OIDC authorization server for Tether's end-to-end tests.
// Engine: `oidc-provider` 9.13.3 (npm, panva, OpenID Certified). This file is only
// configuration, a tiny interaction UI and a few opt-in response rewrites that
// simulate broken servers; every protocol endpoint is the library's own code.
// Adapted from the realservers reference harness.
//
// Started by tests/peers/fixture.py (AuthServer). Environment (all optional):
//   PEERS_NODE_DIR  folder holding node_modules/oidc-provider (install-peers.sh output)
//   AS_HOST (127.0.0.1)  AS_PORT (9400)  AS_ISSUER (derived: scheme://host:port)
//   AS_TLS_CERT / AS_TLS_KEY   PEM files -> serve HTTPS instead of HTTP
//   AS_INTERACTION  auto (default: login + consent answered by 303 redirects;
//                   login_hint=deny -> access_denied, login_hint=<user> picks the subject)
//                   | form (HTML login form #username/#password/#submit, consent #allow/#deny)
//   AS_USERS        "user:password,..." for form mode (default test-user:test-password)
//   AS_AUTO_USER    subject in auto mode (default test-user)
//   AS_ACCESS_TOKEN_TTL (3600)  AS_REFRESH_TOKEN_TTL (1209600)   seconds
//   AS_ACCESS_TOKEN_FORMAT jwt (default) | opaque
//   AS_ACCESS_TOKEN_ALG    RS256 (default) | ES256 | PS256
//   AS_RESOURCES    comma list of accepted RFC 8707 resources, or "*" (default)
//   AS_DEFAULT_RESOURCE  resource used when a client sends none
//   AS_RESOURCE_SCOPES   scopes resources accept (default "mcp:tools mcp:read mcp:write mcp:admin")
//   AS_DEFAULT_SCOPE     scope added to a GET /auth that has none
//   AS_ROTATE_REFRESH    1 (default: rotate on every use) | 0
//   AS_REFRESH_ALWAYS    1 (default: refresh token for any client allowed the
//                   refresh_token grant) | 0 (only when offline_access was granted)
//   AS_OFFLINE_ACCESS    1 (default: offline_access is a known, advertised scope) | 0
//   AS_OFFLINE_ACCESS_STRICT  0 (default: a request asking for offline_access gets
//                   prompt=consent added, so the library keeps the scope) | 1 (OIDC rule:
//                   offline_access is silently dropped without prompt=consent)
//   AS_PKCE_REQUIRED     1 (default) | 0 (PKCE optional; S256 still the only method)
//   AS_NO_PKCE_METADATA  1 -> discovery omits code_challenge_methods_supported
//   AS_WRONG_ISSUER      1 | <value> -> discovery documents carry a wrong `issuer`
//                   (1 = "<issuer>/wrong")
//   AS_WRONG_ISS         1 | <value> -> authorization responses carry a wrong RFC 9207 `iss`
//   AS_NO_ISS            1 -> authorization responses carry no `iss` and the metadata says
//                   authorization_response_iss_parameter_supported: false
//   AS_DCR               1 (default: open DCR at /reg) | 0 (no registration endpoint)
//   AS_PRIVATE_KEY_JWT   0 (default) | 1 (accept private_key_jwt client authentication; clients
//                        from AS_CLIENTS_FILE may use it). The client_credentials grant is
//                        always on, for clients whose grant_types allow it.
//   AS_DCR_INITIAL_ACCESS_TOKEN  if set, /reg requires this bearer token
//   AS_CLIENTS_FILE JSON array of extra static clients (oidc-provider client metadata)
//   AS_RS_CLIENT_SECRET  secret of the introspection client (mcp-resource-server-secret)
//   AS_JWKS_FILE    keep the signing keys across restarts
//   AS_CIMD         1 -> Client ID Metadata Documents (needs NODE_EXTRA_CA_CERTS with TLS)
//   AS_FETCH_SSRF   1 -> keep the library's refusal to fetch loopback/private URLs
//   AS_LOG          1 -> one line per HTTP request on stderr
//   AS_STORE_SIZE   in-memory store size (default 1000000 entries)
import { createRequire } from 'node:module';
import { pathToFileURL, fileURLToPath } from 'node:url';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import * as https from 'node:https';

const env = process.env;
const nodeDir = env.PEERS_NODE_DIR || path.dirname(fileURLToPath(import.meta.url));
const req = createRequire(path.join(nodeDir, 'package.json'));
const { default: Provider, errors } = await import(pathToFileURL(req.resolve('oidc-provider')).href);
// The library's quick-start memory adapter is an LRU of ~1000 entries: long runs
// would see clients and refresh tokens evicted. Reuse it with a bigger store.
const libDir = path.dirname(req.resolve('oidc-provider'));
const { default: MemoryAdapter } = await import(pathToFileURL(path.join(libDir, 'adapters/memory_adapter.js')).href);
const { default: LRU } = await import(pathToFileURL(path.join(libDir, 'helpers/lru.js')).href);

const flag = (name, dflt) => (env[name] ?? dflt) === '1';
const HOST = env.AS_HOST || '127.0.0.1';
const PORT = Number(env.AS_PORT || 9400);
const TLS = Boolean(env.AS_TLS_CERT && env.AS_TLS_KEY);
const hostForUrl = HOST.includes(':') ? `[${HOST}]` : HOST;
const ISSUER = (env.AS_ISSUER || `${TLS ? 'https' : 'http'}://${hostForUrl}:${PORT}`).replace(/\/$/, '');
const INTERACTION = env.AS_INTERACTION || 'auto';
const AT_TTL = Number(env.AS_ACCESS_TOKEN_TTL || 3600);
const RT_TTL = Number(env.AS_REFRESH_TOKEN_TTL || 14 * 24 * 3600);
const AT_FORMAT = env.AS_ACCESS_TOKEN_FORMAT || 'jwt';
const AT_ALG = env.AS_ACCESS_TOKEN_ALG || 'RS256';
const RESOURCES = (env.AS_RESOURCES || '*').split(',').map((s) => s.trim()).filter(Boolean);
const DEFAULT_RESOURCE = env.AS_DEFAULT_RESOURCE || undefined;
const RESOURCE_SCOPES = (env.AS_RESOURCE_SCOPES || 'mcp:tools mcp:read mcp:write mcp:admin').trim();
const ROTATE = flag('AS_ROTATE_REFRESH', '1');
const REFRESH_ALWAYS = flag('AS_REFRESH_ALWAYS', '1');
const OFFLINE_ACCESS = flag('AS_OFFLINE_ACCESS', '1');
const OFFLINE_STRICT = flag('AS_OFFLINE_ACCESS_STRICT', '0');
const PKCE_REQUIRED = flag('AS_PKCE_REQUIRED', '1');
const NO_PKCE_METADATA = flag('AS_NO_PKCE_METADATA', '0');
const wrongValue = (name) => {
  const v = env[name];
  if (!v || v === '0') return undefined;
  return v === '1' ? `${ISSUER}/wrong` : v;
};
const WRONG_ISSUER = wrongValue('AS_WRONG_ISSUER');
const WRONG_ISS = wrongValue('AS_WRONG_ISS');
const NO_ISS = flag('AS_NO_ISS', '0');
const DCR = flag('AS_DCR', '1');
const AUTO_USER = env.AS_AUTO_USER || 'test-user';
const USERS = new Map((env.AS_USERS || 'test-user:test-password').split(',').map((p) => {
  const i = p.indexOf(':');
  return [p.slice(0, i), p.slice(i + 1)];
}));
const LOG = flag('AS_LOG', '0');

// ---------------------------------------------------------------- keys
function makeJwks() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rsa-${crypto.randomBytes(4).toString('hex')}`, use: 'sig' },
      { ...ec, kid: `ec-${crypto.randomBytes(4).toString('hex')}`, use: 'sig' },
    ],
  };
}
let jwks;
if (env.AS_JWKS_FILE && fs.existsSync(env.AS_JWKS_FILE)) {
  jwks = JSON.parse(fs.readFileSync(env.AS_JWKS_FILE, 'utf8'));
} else {
  jwks = makeJwks();
  if (env.AS_JWKS_FILE) fs.writeFileSync(env.AS_JWKS_FILE, JSON.stringify(jwks), { mode: 0o600 });
}

// ---------------------------------------------------------------- clients
// native + loopback redirect URIs match on any port (RFC 8252 section 7.3), so
// these clients accept e.g. http://127.0.0.1:54321/oauth/callback.
const loopbackRedirects = [];
for (const h of ['127.0.0.1', 'localhost', '[::1]']) {
  for (const p of ['/oauth/callback', '/callback']) loopbackRedirects.push(`http://${h}${p}`);
}
const webRedirects = [];
for (const h of ['127.0.0.1', 'localhost']) {
  for (const p of [3000, 8080, 33418]) webRedirects.push(`http://${h}:${p}/callback`, `http://${h}:${p}/oauth/callback`);
}
const grants = ['authorization_code', 'refresh_token'];
const clients = [
  {
    client_id: 'static-basic',
    client_secret: 'static-basic-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    application_type: 'native',
    redirect_uris: loopbackRedirects,
    grant_types: grants,
  },
  {
    client_id: 'static-post',
    client_secret: 'static-post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    application_type: 'native',
    redirect_uris: loopbackRedirects,
    grant_types: grants,
  },
  {
    client_id: 'static-public',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    redirect_uris: loopbackRedirects,
    grant_types: grants,
  },
  {
    client_id: 'static-web',
    client_secret: 'static-web-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    application_type: 'web', // exact redirect_uri match
    redirect_uris: webRedirects,
    grant_types: grants,
  },
  {
    client_id: 'mcp-resource-server',
    client_secret: env.AS_RS_CLIENT_SECRET || 'mcp-resource-server-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [],
    response_types: [],
    grant_types: [],
  },
];
if (env.AS_CLIENTS_FILE) clients.push(...JSON.parse(fs.readFileSync(env.AS_CLIENTS_FILE, 'utf8')));

// ---------------------------------------------------------------- resources
function resourceAllowed(indicator) {
  if (RESOURCES.includes('*')) {
    try {
      const u = new URL(indicator);
      return (u.protocol === 'http:' || u.protocol === 'https:') && !u.hash;
    } catch { return false; }
  }
  const norm = (s) => s.replace(/\/$/, '');
  return RESOURCES.some((r) => norm(r) === norm(indicator));
}

const store = new LRU({ maxSize: Number(env.AS_STORE_SIZE || 1_000_000) });
const configuration = {
  adapter: (model) => new MemoryAdapter(model, store, 15),
  clients,
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  clientDefaults: {
    grant_types: grants,
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post',
    ...(flag('AS_PRIVATE_KEY_JWT', '0') ? ['private_key_jwt'] : [])],
  scopes: ['openid', ...(OFFLINE_ACCESS ? ['offline_access'] : []), 'profile', 'email',
    ...RESOURCE_SCOPES.split(/\s+/)],
  claims: {
    openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'],
  },
  responseTypes: ['code'],
  pkce: { required: () => PKCE_REQUIRED }, // S256 is the only method the library supports
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    registration: {
      enabled: DCR,
      initialAccessToken: env.AS_DCR_INITIAL_ACCESS_TOKEN || false,
      issueRegistrationAccessToken: true,
    },
    registrationManagement: { enabled: DCR, rotateRegistrationAccessToken: false },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
    introspection: {
      enabled: true,
      // the resource-server client may introspect any token; others only their own
      allowedPolicy: async (ctx, client, token) => client.clientId === 'mcp-resource-server'
        || token.clientId === client.clientId,
    },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf || DEFAULT_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (!resourceAllowed(resourceIndicator)) {
          throw new errors.InvalidTarget(`resource ${resourceIndicator} is not known to this server`);
        }
        const info = {
          scope: RESOURCE_SCOPES,
          audience: resourceIndicator,
          accessTokenTTL: AT_TTL,
          accessTokenFormat: AT_FORMAT,
        };
        if (AT_FORMAT === 'jwt') info.jwt = { sign: { alg: AT_ALG } };
        return info;
      },
    },
    ...(flag('AS_CIMD', '0') ? {
      clientIdMetadataDocument: { enabled: true, ack: 'draft-02' },
    } : {}),
  },
  issueRefreshToken: async (ctx, client, code) => {
    if (!client.grantTypeAllowed('refresh_token')) return false;
    return REFRESH_ALWAYS || code.scopes.has('offline_access');
  },
  ...(ROTATE ? { rotateRefreshToken: () => true } : {}),
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || AT_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: RT_TTL,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    ClientCredentials: AT_TTL,
  },
  expiresWithSession: async () => false,
  // oidc-provider's outgoing fetches refuse loopback/private addresses (SSRF
  // guard); this loopback-only server drops that guard unless AS_FETCH_SSRF=1.
  fetch: (url, options) => {
    if (!flag('AS_FETCH_SSRF', '0')) delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub, name: sub, preferred_username: sub, email: `${sub}@example.test`, email_verified: true,
    }),
  }),
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops</title></head><body><h1>oops! something went wrong</h1><pre id="error">${esc(JSON.stringify(out, null, 2))}</pre></body></html>`;
  },
};

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

const provider = new Provider(ISSUER, configuration);
provider.proxy = flag('AS_TRUST_PROXY', '0');

for (const ev of ['server_error', 'authorization.error', 'grant.error', 'registration_create.error',
  'introspection.error', 'revocation.error', 'userinfo.error', 'discovery.error']) {
  provider.on(ev, (ctx, err) => {
    let cause = '';
    for (let c = err?.cause, i = 0; c && i < 3; c = c.cause, i += 1) cause += ` <- ${c.code || ''} ${c.message || c}`;
    console.error(`[as] ${ev}: ${err?.message}${err?.error_description ? ` (${err.error_description})` : ''}${cause}`);
  });
}

// ---------------------------------------------------------------- middleware
provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    await next();
  } finally {
    if (LOG) console.error(`[as] ${ctx.method} ${ctx.originalUrl} -> ${ctx.status} ${Date.now() - started}ms`);
  }
});

// Opt-in rewrites that simulate a misbehaving server (run around the library).
const DISCOVERY = new Set(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']);
provider.use(async (ctx, next) => {
  await next();
  if (DISCOVERY.has(ctx.path) && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
    const body = { ...ctx.body };
    if (NO_PKCE_METADATA) delete body.code_challenge_methods_supported;
    if (WRONG_ISSUER) body.issuer = WRONG_ISSUER;
    if (NO_ISS) body.authorization_response_iss_parameter_supported = false;
    ctx.body = body;
  }
  if ((WRONG_ISS || NO_ISS) && ctx.status >= 300 && ctx.status < 400) {
    const location = ctx.response.get('location');
    if (location) {
      let u;
      try { u = new URL(location); } catch { u = undefined; }
      if (u && u.searchParams.get('iss') === ISSUER) {
        if (NO_ISS) u.searchParams.delete('iss');
        else u.searchParams.set('iss', WRONG_ISS);
        ctx.set('location', u.href);
      }
    }
  }
});

// Request rewrites: AS_DEFAULT_SCOPE for scope-less requests (the library never
// grants "nothing"), and prompt=consent for offline_access (the library drops
// offline_access without it, an OIDC rule most OAuth clients do not know).
const DEFAULT_SCOPE = env.AS_DEFAULT_SCOPE || '';
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    const q = new URLSearchParams(ctx.querystring);
    let changed = false;
    if (DEFAULT_SCOPE && !q.get('scope')) {
      q.set('scope', DEFAULT_SCOPE);
      changed = true;
    }
    const scopes = (q.get('scope') || '').split(' ');
    const prompts = (q.get('prompt') || '').split(' ').filter(Boolean);
    if (OFFLINE_ACCESS && !OFFLINE_STRICT && scopes.includes('offline_access') && !prompts.includes('consent')) {
      q.set('prompt', [...prompts, 'consent'].join(' '));
      changed = true;
    }
    if (changed) ctx.querystring = q.toString();
  }
  return next();
});

// ---------------------------------------------------------------- interactions
async function readForm(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantFor(details, accountId, clientId) {
  const { prompt: { details: missing } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/healthz') {
    ctx.body = { ok: true, issuer: ISSUER };
    return undefined;
  }
  const m = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (!m) return next();
  ctx.set('cache-control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('interaction error', `<pre id="error">${esc(err.message)}</pre>`);
    return undefined;
  }
  const { uid, prompt, params, session } = details;
  const action = m[2];
  const finish = (result, merge = false) => provider.interactionFinished(
    ctx.req, ctx.res, result, { mergeWithLastSubmission: merge },
  );

  if (action === 'abort') {
    return finish({ error: 'access_denied', error_description: 'End-User aborted interaction' });
  }

  if (INTERACTION === 'auto' && !action) {
    if (params.login_hint === 'deny') {
      return finish({ error: 'access_denied', error_description: 'denied by login_hint=deny' });
    }
    const accountId = session?.accountId || params.login_hint || AUTO_USER;
    const result = {};
    if (prompt.name === 'login') result.login = { accountId };
    const grantId = await grantFor({ ...details, prompt }, accountId, params.client_id);
    result.consent = details.grantId ? {} : { grantId };
    return finish(result, prompt.name !== 'login');
  }

  // ---- form mode (real pages a browser must fill in)
  if (ctx.method === 'GET' && !action) {
    const client = await provider.Client.find(params.client_id);
    const clientName = esc(client?.clientName || params.client_id);
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = page('Sign-in', `<p>Client <b id="client">${clientName}</b> asks you to sign in.</p>
<form id="login-form" method="post" action="/interaction/${uid}/login" autocomplete="off">
<label>Username <input id="username" name="username" required autofocus value="${esc(params.login_hint || '')}"></label>
<label>Password <input id="password" name="password" type="password" required></label>
<button id="submit" type="submit">Sign-in</button></form>
<a id="abort" href="/interaction/${uid}/abort">Cancel</a>`);
    } else {
      const scopes = [...new Set([...(prompt.details.missingOIDCScope || []),
        ...Object.values(prompt.details.missingResourceScopes || {}).flat()])];
      ctx.body = page('Authorize', `<p>Client <b id="client">${clientName}</b> wants access.</p>
<ul id="scopes">${scopes.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
<p id="resource">${esc([].concat(params.resource || []).join(' '))}</p>
<form id="consent-form" method="post" action="/interaction/${uid}/confirm">
<button id="allow" type="submit">Allow</button></form>
<a id="deny" href="/interaction/${uid}/abort">Deny</a>`);
    }
    return undefined;
  }

  if (ctx.method === 'POST' && action === 'login') {
    const form = await readForm(ctx);
    const user = form.get('username') || form.get('login');
    const pw = form.get('password');
    if (!USERS.has(user) || USERS.get(user) !== pw) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = page('Sign-in failed', `<p id="error">invalid username or password</p>
<a id="retry" href="/interaction/${uid}">Try again</a>`);
      return undefined;
    }
    return finish({ login: { accountId: user } });
  }

  if (ctx.method === 'POST' && action === 'confirm') {
    await readForm(ctx);
    const grantId = await grantFor(details, session.accountId, params.client_id);
    return finish({ consent: details.grantId ? {} : { grantId } }, true);
  }
  ctx.status = 405;
  return undefined;
});

const server = TLS
  ? https.createServer({ cert: fs.readFileSync(env.AS_TLS_CERT), key: fs.readFileSync(env.AS_TLS_KEY) }, provider.callback())
  : http.createServer(provider.callback());
server.listen(PORT, HOST, () => {
  console.log(`[as] oidc-provider ${process.version} listening, issuer ${ISSUER} (interaction=${INTERACTION}, at_ttl=${AT_TTL}s, format=${AT_FORMAT})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
