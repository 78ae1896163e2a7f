// Settings and helpers shared by the k6 scripts in this directory.
//
// Environment (k6 run -e NAME=value, or the shell's environment):
//   BASE_URL      where the API is (default http://localhost:8080: the gateway
//                 of `make run`, or the one docker compose publishes)
//   TOKEN         a customer's bearer token, sent with every request a
//                 customer makes; CUSTOMER_ID must then be its subject. The
//                 gateway limits each client (default 50 requests/s)
//   ADMIN_TOKEN   an admin's bearer token, for what the gateway lets only
//                 admins do: add stock (setup) and read the sales report
//   CUSTOMER_ID   the customer the orders are placed for (default cust-load);
//                 without TOKEN each virtual user is a customer of its own,
//                 CUSTOMER_ID-<vu>, so the per-client limit applies per user
//   JWT_SECRET    without TOKEN or ADMIN_TOKEN: mint the missing ones, HS256
//                 with this secret, iss JWT_ISSUER and aud JWT_AUDIENCE
//                 (default orderflow and orderflow-api, the binary's own
//                 defaults; docker-compose.yml sets its own for the k6 service)
//   SKUS          comma-separated SKUs ordered (default LOAD-SKU-1..5)
//   SETUP_STOCK   "false" skips adding stock to the SKUs before the test
//
// Every request goes through the gateway, which wants a token: without TOKEN
// and JWT_SECRET none is sent and the gateway answers 401. Against `make run`
// pass JWT_SECRET=$(scripts/jwt-secret.sh); straight to a role's own API
// (BASE_URL=http://127.0.0.1:8081 with `make run`) none is needed.
import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

export const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');

// __VU is 0 in setup() and teardown(), 1.. in the virtual users.
export const CUSTOMER_ID = __ENV.TOKEN
  ? __ENV.CUSTOMER_ID || 'cust-load'
  : `${__ENV.CUSTOMER_ID || 'cust-load'}-${__VU}`;

export const TOKEN = __ENV.TOKEN || mintToken(CUSTOMER_ID, 'customer');
export const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || mintToken('load-admin', 'admin');

export const SKUS = (__ENV.SKUS || 'LOAD-SKU-1,LOAD-SKU-2,LOAD-SKU-3,LOAD-SKU-4,LOAD-SKU-5')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');

// Order statuses after which an order does not change any more.
export const TERMINAL = ['confirmed', 'rejected', 'cancelled'];

// mintToken returns an HS256 JWT for subject in role ("customer" or
// "admin") signed with JWT_SECRET, or '' when JWT_SECRET is not set.
function mintToken(subject, role) {
  const secret = __ENV.JWT_SECRET;
  if (!secret) {
    return '';
  }
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    sub: subject,
    role,
    iss: __ENV.JWT_ISSUER || 'orderflow',
    aud: __ENV.JWT_AUDIENCE || 'orderflow-api',
    iat: now,
    exp: now + 24 * 3600,
  };
  const header = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');
  const payload = encoding.b64encode(JSON.stringify(claims), 'rawurl');
  const signature = crypto.hmac('sha256', secret, `${header}.${payload}`, 'base64rawurl');
  return `${header}.${payload}.${signature}`;
}

// params returns the parameters of a customer's request: its bearer token,
// JSON content type, extra headers, and a name tag that groups URLs holding
// ids into one metric. extra adds k6 parameters (responseCallback, ...).
export function params(name, headers = {}, extra = {}) {
  return withToken(TOKEN, name, headers, extra);
}

// adminParams is params with the admin's token.
export function adminParams(name, headers = {}, extra = {}) {
  return withToken(ADMIN_TOKEN, name, headers, extra);
}

function withToken(token, name, headers, extra) {
  const h = { 'Content-Type': 'application/json', ...headers };
  if (token) {
    h.Authorization = `Bearer ${token}`;
  }
  return { headers: h, tags: { name }, ...extra };
}

// idempotencyKey returns a key no other request of this run uses.
export function idempotencyKey() {
  return `load-${__VU}-${__ITER}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

// pick returns a random element of list.
export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// orderBody returns a PlaceOrderRequest of one to three distinct SKUs.
export function orderBody() {
  const skus = [...SKUS];
  for (let i = skus.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [skus[i], skus[j]] = [skus[j], skus[i]];
  }
  skus.length = 1 + Math.floor(Math.random() * Math.min(3, skus.length));
  return JSON.stringify({
    customer_id: CUSTOMER_ID,
    lines: skus.map((sku) => ({ sku, quantity: 1 + Math.floor(Math.random() * 3), unit_price_cents: 100 + Math.floor(Math.random() * 9900) })),
  });
}

// today returns the UTC day as YYYY-MM-DD, daysAgo days back.
export function today(daysAgo = 0) {
  return new Date(Date.now() - daysAgo * 86400000).toISOString().slice(0, 10);
}

// addStock gives each SKU plenty of stock, as the admin, so orders are
// confirmed rather than rejected. Call it from setup(); it warns rather than
// fails, so a run without an admin token still measures what it can.
export function addStock() {
  if (__ENV.SETUP_STOCK === 'false') {
    return;
  }
  for (const sku of SKUS) {
    const res = http.post(
      `${BASE_URL}/v1/inventory/${encodeURIComponent(sku)}/stock`,
      JSON.stringify({ quantity: 1000000 }),
      adminParams('add stock', { 'Idempotency-Key': idempotencyKey() }),
    );
    if (res.status !== 200) {
      console.warn(`adding stock to ${sku}: status ${res.status}; orders for it may be rejected`);
    }
  }
}
