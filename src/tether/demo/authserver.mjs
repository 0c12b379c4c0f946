// The authorization server of `tether demo`: oidc-provider (npm, OpenID Certified) on
// loopback with a real sign-in and consent page. Only configuration and the two pages
// live here; every protocol endpoint (discovery, dynamic client registration, PKCE
// authorization code, refresh, RFC 8707 resources, RFC 7662 introspection, RFC 7009
// revocation) is the library's own code. Started by src/tether/demo/peers.py.
//
// Environment:
//   DEMO_NODE_DIR   folder holding node_modules/oidc-provider (.ci/install-peers.sh output)
//   DEMO_AS_PORT    port on 127.0.0.1
//   DEMO_USER / DEMO_PASSWORD   the one demo account
//   DEMO_RS_SECRET  secret of the MCP server's introspection client (demo-mcp)
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';

const env = process.env;
const req = createRequire(path.join(env.DEMO_NODE_DIR, 'package.json'));
const { default: Provider } = await import(pathToFileURL(req.resolve('oidc-provider')).href);

const PORT = Number(env.DEMO_AS_PORT);
const ISSUER = `http://127.0.0.1:${PORT}`;
const USER = env.DEMO_USER;
const PASSWORD = env.DEMO_PASSWORD;
const SCOPES = 'mcp:tools';

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)} · Demo sign-in</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:28rem;margin:3rem auto;color:#1d2430}
label{display:block;margin:.5rem 0}input{width:100%;padding:.3rem;box-sizing:border-box}
button{padding:.4rem 1rem;margin-top:.6rem}.hint{color:#555;font-size:.9em}</style></head>
<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

const configuration = {
  clients: [{
    client_id: 'demo-mcp',
    client_secret: env.DEMO_RS_SECRET,
    redirect_uris: [],
    response_types: [],
    grant_types: [],
  }],
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  clientDefaults: { grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] },
  scopes: ['openid', 'offline_access', SCOPES],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => client.clientId === 'demo-mcp'
        || token.clientId === client.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => ({
        scope: SCOPES, audience: resource, accessTokenTTL: 3600, accessTokenFormat: 'opaque',
      }),
    },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Something went wrong', `<pre id="error">${esc(JSON.stringify(out, null, 2))}</pre>`);
  },
};

const provider = new Provider(ISSUER, configuration);

// offline_access needs prompt=consent to be kept (an OIDC rule); the demo always asks.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    const q = new URLSearchParams(ctx.querystring);
    const prompts = (q.get('prompt') || '').split(' ').filter(Boolean);
    if (!prompts.includes('consent')) {
      q.set('prompt', [...prompts, 'consent'].join(' '));
      ctx.querystring = q.toString();
    }
  }
  return next();
});

async function readForm(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
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
    ctx.body = page('Sign-in expired', `<p id="error">${esc(err.message)}</p>`);
    return undefined;
  }
  const { uid, prompt, params, session } = details;
  const finish = (result, merge) => provider.interactionFinished(
    ctx.req, ctx.res, result, { mergeWithLastSubmission: merge },
  );
  const action = m[2];
  if (action === 'abort') {
    return finish({ error: 'access_denied', error_description: 'the user denied access' }, false);
  }
  if (ctx.method === 'GET' && !action) {
    const client = await provider.Client.find(params.client_id);
    const name = esc(client?.clientName || params.client_id);
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = page('Sign in', `<p><b id="client">${name}</b> wants to use the demo MCP server for you.</p>
<form id="login-form" method="post" action="/interaction/${uid}/login" autocomplete="off">
<label>Username <input id="username" name="username" required autofocus></label>
<label>Password <input id="password" name="password" type="password" required></label>
<button id="submit" type="submit">Sign in</button></form>
<p class="hint">Demo account: ${esc(USER)} / ${esc(PASSWORD)}</p>
<a id="abort" href="/interaction/${uid}/abort">Cancel</a>`);
    } else {
      const scopes = [...new Set([...(prompt.details.missingOIDCScope || []),
        ...Object.values(prompt.details.missingResourceScopes || {}).flat()])];
      ctx.body = page('Allow access?', `<p><b id="client">${name}</b> asks for:</p>
<ul id="scopes">${scopes.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
<p>on <code id="resource">${esc([].concat(params.resource || []).join(' '))}</code></p>
<form id="consent-form" method="post" action="/interaction/${uid}/confirm">
<button id="allow" type="submit">Allow</button></form>
<a id="deny" href="/interaction/${uid}/abort">Deny</a>`);
    }
    return undefined;
  }
  if (ctx.method === 'POST' && action === 'login') {
    const form = await readForm(ctx);
    if (form.get('username') !== USER || form.get('password') !== PASSWORD) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = page('Sign-in failed', `<p id="error">Wrong username or password.</p>
<a id="retry" href="/interaction/${uid}">Try again</a>`);
      return undefined;
    }
    return finish({ login: { accountId: USER } }, false);
  }
  if (ctx.method === 'POST' && action === 'confirm') {
    await readForm(ctx);
    const missing = prompt.details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const grantId = await grant.save();
    return finish({ consent: details.grantId ? {} : { grantId } }, true);
  }
  ctx.status = 405;
  return undefined;
});

const server = http.createServer(provider.callback());
server.listen(PORT, '127.0.0.1', () => console.log(`[demo-as] issuer ${ISSUER}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
